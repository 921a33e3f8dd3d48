"""Training throughput (sequences/s) of bert_trainer vs keras-hub's BertMaskedLM.

A script, not a test. For each config (tiny, base) and XLA off/on it times full
training steps (forward, backward, optimizer) on one synthetic batch held in memory,
for our engine (MLM + NSP; AdamW by default, --optimizer lamb for NVLAMB) and for
keras-hub's BertMaskedLM built from the same config (MLM only, Keras AdamW,
``model.train_on_batch``), then prints ratios.

keras-hub pulls the full ``tensorflow`` package in beside ``tensorflow-cpu``, so it
lives in its own environment, never in the trainer extra:

    python3 -m venv .cache/venv-bench
    .cache/venv-bench/bin/pip install 'tensorflow-cpu>=2.21,<2.22' 'tensorboard>=2.21,<2.22' \
        numpy safetensors matplotlib boto3 keras-hub
    .cache/venv-bench/bin/python bench/trainer_throughput.py [--configs tiny,base] [--json out.json]

Without keras-hub installed the keras-hub rows are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


# Bench venvs may skip the editable install: the package folder itself is importable.
sys.path.append(str(REPO / "trainer"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_trainer.data.synthetic import make_batch  # noqa: E402
from bert_trainer.engine import EngineOptions, PretrainEngine  # noqa: E402
from bert_trainer.model import PRESETS, BertConfig  # noqa: E402

CONFIGS = {
    "tiny": ({**PRESETS["base"], "num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2,
              "intermediate_size": 512}, 32, 20),
    "base": (PRESETS["base"], 8, 3),
}
SEQ, PRED = 128, 20


REPEATS = 3


def time_steps(step, warmup: int, steps: int) -> float:
    """Seconds per step after ``warmup`` untimed steps (tracing/compilation): the fastest
    of REPEATS windows, because on a shared 2-core machine other jobs inflate some windows."""
    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def bench_ours(cfg: BertConfig, batch: dict, xla: bool, steps: int, optimizer: str) -> float:
    engine = PretrainEngine(cfg, EngineOptions(use_xla=xla, num_train_steps=1000, num_warmup_steps=10,
                                               optimizer=optimizer))
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    return time_steps(lambda: engine.train_step([tensors]), 2, steps)


def bench_keras_hub(cfg: BertConfig, batch: dict, xla: bool, steps: int) -> float | None:
    try:
        import keras
        import keras_hub
    except ImportError:
        return None
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=cfg.vocab_size, num_layers=cfg.num_hidden_layers, num_heads=cfg.num_attention_heads,
        hidden_dim=cfg.hidden_size, intermediate_dim=cfg.intermediate_size, dropout=cfg.hidden_dropout_prob,
        max_sequence_length=cfg.max_position_embeddings, num_segments=cfg.type_vocab_size)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=xla)
    x = {"token_ids": batch["input_ids"], "segment_ids": batch["segment_ids"],
         "padding_mask": batch["input_mask"].astype(bool), "mask_positions": batch["masked_lm_positions"]}
    y, w = batch["masked_lm_ids"], batch["masked_lm_weights"]
    return time_steps(lambda: model.train_on_batch(x, y, sample_weight=w), 2, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="tiny,base")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--optimizer", choices=["adam", "lamb"], default="adam",
                    help="ours: adam compares like for like with keras-hub's AdamW; lamb is the recipe's")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args()
    globals()["REPEATS"] = args.repeats
    rows = []
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs, seq {SEQ}, max_pred {PRED}, fp32, "
          f"ours: MLM+NSP with {args.optimizer}; keras-hub: MLM only with AdamW; best of {REPEATS} windows")
    for name in args.configs.split(","):
        cfg_dict, batch_size, steps = CONFIGS[name]
        cfg = BertConfig.from_dict(cfg_dict)
        batch = make_batch(0, batch_size, cfg.vocab_size, SEQ, PRED)
        for xla in (False, True):
            ours = bench_ours(cfg, batch, xla, steps, args.optimizer)
            theirs = bench_keras_hub(cfg, batch, xla, steps)
            row = {"config": name, "batch": batch_size, "xla": xla, "ours_seq_per_s": batch_size / ours,
                   "keras_hub_seq_per_s": (batch_size / theirs) if theirs else None}
            row["ratio_ours_over_keras_hub"] = (row["ours_seq_per_s"] / row["keras_hub_seq_per_s"]
                                                if theirs else None)
            rows.append(row)
            kh = f"{row['keras_hub_seq_per_s']:.1f}" if theirs else "skipped (keras-hub not installed)"
            ratio = f"{row['ratio_ours_over_keras_hub']:.2f}x" if theirs else "-"
            print(f"{name:5s} batch {batch_size:3d} xla={'on ' if xla else 'off'}  bert_trainer "
                  f"{row['ours_seq_per_s']:8.1f} seq/s   keras-hub {kh} seq/s   ratio {ratio}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
