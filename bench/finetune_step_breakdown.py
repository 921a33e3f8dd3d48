"""Where a fine-tuning step's time goes, ours against transformers: one-time cost and steady-state step cost.

A script, not a test. The accuracy bench's sequences/s are whole training loops, so a short run mixes two
things this script separates, on the same real GLUE batches for both sides (``--task``: MRPC pairs or CoLA
sentences; all-MiniLM-L6-v2's weights, batch 32, seq 128, each batch cut to its longest example, or rounded up
to ``--multiple`` tokens):

* the one-time cost: the first steps' seconds beyond a steady step (ours: tracing and optimising the compiled
  step; transformers: its first-call allocations);
* the steady-state step: CPU seconds per step of the process (what a shared machine disturbs least) and the
  fastest step's wall seconds, over ``--steps`` steps after ``--warmup``.

Each variant runs in its own process (TensorFlow's thread pools are fixed at start), the variants interleaved
round by round (``--rounds``) so that other jobs on a shared machine weigh on all of them alike:

* ``ours``: ``TrainEngine`` as the glue task builds it (fused step, AdamW, clip 1.0, dropout on), fed the
  pipeline's spec (``expect_batches``): one trace;
* ``ours-xla``: the same with ``--use_xla`` (jit_compile);
* ``ours-threads-2x1``: intra-op 2, inter-op 1 threads (TensorFlow's default on 2 cores is 2 and 2);
* ``ours-noclip``: ``--clip_norm 0``;
* ``ours-nodropout`` / ``transformers-nodropout``: dropout off on that side (what dropout costs);
* ``transformers``: ``BertForSequenceClassification``, torch AdamW, clip 1.0, torch's default threads.

    PYTHONPATH=common:operator:trainer .venv/bin/python bench/finetune_step_breakdown.py \
        [--variants ours,transformers,...] [--rounds 2] [--steps 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("ours", "transformers", "ours-xla", "ours-threads-2x1", "ours-noclip", "ours-nodropout",
            "transformers-nodropout")
BATCH, SEQ = 32, 128


def glue_batches(task: str, model_dir: Path, count: int, data: Path, multiple: int) -> list[dict[str, Any]]:
    """`count` seeded batches of the GLUE task's real train examples, each cut to its longest (rounded up to `multiple`)."""
    import numpy as np  # noqa: PLC0415

    from bert_trainer.finetune.glue_data import read_examples  # noqa: PLC0415
    from bert_trainer.finetune.tokenization import encode_pairs, load_tokenizer  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = load_tokenizer(str(model_dir / "vocab.txt"), True, scratch)
    examples = read_examples({"mrpc": "MRPC", "cola": "CoLA"}[task], str(data / task), "train")
    features = encode_pairs(tokenizer, [e.text_a for e in examples], [e.text_b for e in examples], SEQ)
    features["labels"] = np.array([e.label for e in examples], dtype=np.int32)
    order = np.random.default_rng(0).permutation(len(examples))
    out = []
    for i in range(count):
        picked = order[i * BATCH:(i + 1) * BATCH]
        batch = {key: value[picked] for key, value in features.items()}
        longest = int(batch["input_mask"].sum(1).max())
        length = min(SEQ, -(-longest // multiple) * multiple)
        out.append({key: value[:, :length] if value.ndim == 2 else value for key, value in batch.items()})
    return out


def ours(variant: str, model_dir: Path, batches: list[dict[str, Any]]):
    """A step function of this project's engine, as the glue task builds it, with the variant's change."""
    import dataclasses  # noqa: PLC0415

    import tensorflow as tf  # noqa: PLC0415

    if variant == "ours-threads-2x1":
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from bert_trainer.engine import EngineOptions, TrainEngine  # noqa: PLC0415
    from bert_trainer.finetune.classifier import BertClassifier, load_encoder  # noqa: PLC0415
    from bert_trainer.finetune.losses import classification_loss  # noqa: PLC0415
    from bert_trainer.model.config import BertConfig  # noqa: PLC0415

    cfg = BertConfig.from_json((model_dir / "config.json").read_text())
    if variant == "ours-nodropout":
        cfg = dataclasses.replace(cfg, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertClassifier(cfg, 2)
    with tempfile.TemporaryDirectory() as scratch:
        load_encoder(model, str(model_dir / "model.safetensors"), scratch)
    engine = TrainEngine(model, classification_loss, EngineOptions(
        learning_rate=2e-5, num_train_steps=1000, num_warmup_steps=100, optimizer="adam",
        use_xla=variant == "ours-xla", clip_norm=0.0 if variant == "ours-noclip" else 1.0))
    engine.expect_batches({key: tf.TensorSpec([BATCH, None] if value.ndim == 2 else [BATCH], tf.int32)
                           for key, value in batches[0].items()})
    tensors = [{key: tf.constant(value) for key, value in batch.items()} for batch in batches]
    return lambda i: engine.train_step([tensors[i]])


def transformers_step(variant: str, model_dir: Path, batches: list[dict[str, Any]]):
    """A step of transformers' BertForSequenceClassification with torch AdamW and clipping, as the reference."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from transformers import BertForSequenceClassification  # noqa: PLC0415

    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
    if variant == "transformers-nodropout":
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=2e-5, eps=1e-6)
    model.train()
    names = {"input_ids": "input_ids", "input_mask": "attention_mask", "segment_ids": "token_type_ids",
             "labels": "labels"}
    tensors = [{names[k]: torch.from_numpy(v.astype(np.int64)) for k, v in b.items()} for b in batches]

    def step(i: int) -> None:
        model(**tensors[i]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


def measure(variant: str, task: str, steps: int, warmup: int, multiple: int) -> dict[str, Any]:
    """One variant in this process: first steps' wall seconds, then the steady steps' CPU and wall seconds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from finetune_accuracy import DATA, minilm_dir  # noqa: PLC0415 - the bench's own helpers

    model_dir = minilm_dir()
    batches = glue_batches(task, model_dir, warmup + steps, DATA, multiple)
    step = transformers_step(variant, model_dir, batches) if variant.startswith("transformers") else \
        ours(variant, model_dir, batches)
    first, walls, cpus = [], [], []
    for i in range(warmup + steps):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        step(i)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if i < warmup:
            first.append(wall)
        else:
            walls.append(wall)
            cpus.append(cpu)
    steady = sum(walls) / len(walls)
    return {"variant": variant, "first_steps_s": [round(w, 2) for w in first],
            "one_time_s": round(sum(first) - warmup * min(walls), 2), "cpu_s_per_step": round(sum(cpus) / len(cpus), 3),
            "min_wall_s_per_step": round(min(walls), 3), "mean_wall_s_per_step": round(steady, 3),
            "mean_tokens": round(sum(b["input_ids"].shape[1] for b in batches[warmup:]) / steps, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--task", choices=["mrpc", "cola"], default="mrpc",
                    help="whose real train batches: MRPC pairs (~85 tokens a batch) or CoLA sentences (~24)")
    ap.add_argument("--multiple", type=int, default=1,
                    help="cut each batch to its longest example rounded up to this many tokens (1: exact, as the "
                         "glue task trains without XLA and transformers' collator pads; 8: the glue task before)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this variant in this process
    ap.add_argument("--json")
    opts = ap.parse_args()
    if opts.one:
        print(json.dumps(measure(opts.one, opts.task, opts.steps, opts.warmup, opts.multiple)))
        return 0
    variants = [v.strip() for v in opts.variants.split(",") if v.strip()]
    if bad := [v for v in variants if v not in VARIANTS]:
        ap.error(f"--variants: unknown {', '.join(bad)} (one of {', '.join(VARIANTS)})")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO / "common"), str(REPO / "trainer"), os.environ.get("PYTHONPATH", "")])}
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(opts.rounds):
        for variant in variants:
            command = [sys.executable, __file__, "--one", variant, "--task", opts.task, "--steps", str(opts.steps),
                       "--warmup", str(opts.warmup), "--multiple", str(opts.multiple)]
            out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
            rows[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(f"  {rows[variant][-1]}", file=sys.stderr, flush=True)
    base = min(r["cpu_s_per_step"] for r in rows.get("transformers", [])) if rows.get("transformers") else None
    print(f"{opts.task.upper()} batches of {BATCH} cut to their longest example (multiples of {opts.multiple}), "
          f"{opts.steps} steady steps after {opts.warmup}, {opts.rounds} interleaved rounds "
          "(per round; the best CPU s/step in the ratio)")
    print("| variant | one-time s (first steps beyond steady) | CPU s/step | min wall s/step | CPU s/step vs transformers |")
    print("|---|---|---|---|---|")
    for variant, results in rows.items():
        ratio = f"{min(r['cpu_s_per_step'] for r in results) / base:.2f}x" if base else "n/a"
        print(f"| {variant} | {' / '.join(str(r['one_time_s']) for r in results)} | "
              f"{' / '.join(str(r['cpu_s_per_step']) for r in results)} | "
              f"{' / '.join(str(r['min_wall_s_per_step']) for r in results)} | {ratio} |")
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
