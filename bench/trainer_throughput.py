"""Training throughput (sequences/s) and model-FLOPs utilisation of bert_trainer, vs keras-hub's BertMaskedLM.

A script, not a test. For each config and XLA setting it times full training steps
(forward, backward, optimizer) on one synthetic batch held in memory, for our engine
(MLM + NSP; AdamW by default, --optimizer lamb for NVLAMB) and for keras-hub's
BertMaskedLM built from the same config (MLM only, Keras AdamW, ``model.train_on_batch``),
then prints seq/s, the ratio and, where the peak is known, the MFU.

Configs: ``tiny`` (2 layers, H 128, BERT's 30522 vocabulary), ``base`` and ``large``
(Google's uncased BERT-Base / BERT-Large, vocabulary 30522 as in their bert_config.json,
which NVIDIA's TensorFlow recipe uses unpadded). Sequence length 128, 20 masked
positions (NVIDIA's phase 1). Default batch: on a GPU the recipe's per-GPU phase-1
batch (16, the operator's default ``batchSizePerGpu``); on CPU small batches that finish
in minutes (tiny 32, base 8, large 4). ``--batch`` overrides.

MFU = seq/s x model FLOPs per trained sequence / peak FLOPs/s of the device.
Model FLOPs per sequence (bert_trainer.model.flops, forward + backward = 3x forward):

    6*s*L*(4h^2 + 2hi) + 12*L*s^2*h + 6*P*(h^2 + hV) + 6*h^2

(s sequence length, P masked positions, L layers, h hidden, i intermediate, V vocab):
240.6 GFLOPs for BERT-Large at s=128, P=20. The peak is looked up by GPU name in
PEAK_TFLOPS (dense tensor-core figures; fp32 means TF32, which TensorFlow enables by
default on Ampere and later) or given with --peak_tflops; on CPU without --peak_tflops
MFU is not printed. One process, one device: the figure per GPU, without allreduce.

GPU run (TensorFlow with CUDA, e.g. NVIDIA's TensorFlow container), BERT-Large, AMP + XLA:

    python bench/trainer_throughput.py --configs large --precision fp16 --xla on --baseline none
    python bench/trainer_throughput.py --configs large --precision fp16 --xla on --baseline none --fuse_update off

The first times the trainer's own path (one process: the optimizer update inside the
XLA cluster, EngineOptions.fuse_update_into_xla, on by default since issue 17, what
keras-hub's jit_compile does); ``--fuse_update off`` runs the update as its own
tf.function, as the engine does under Horovod or with accumulation. On CPU the fused
step was 1.1x to 2.2x faster for BERT-Base across runs on a shared 2-core machine (one
fused loop per variable instead of ~18 TensorFlow elementwise passes over 110M weights).

keras-hub pulls the full ``tensorflow`` package in beside ``tensorflow-cpu``, so it
lives in its own environment, never in the trainer extra:

    python3 -m venv .cache/venv-bench
    .cache/venv-bench/bin/pip install 'tensorflow-cpu>=2.21,<2.22' 'tensorboard>=2.21,<2.22' \
        numpy safetensors matplotlib boto3 pydantic keras-hub
    .cache/venv-bench/bin/python bench/trainer_throughput.py [--configs tiny,base] [--xla off,on] [--json out.json]

Without keras-hub installed the keras-hub rows are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


# Bench venvs may skip the editable install: the package folder itself is importable.
sys.path += [str(REPO / "common"), str(REPO / "trainer")]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_trainer.data.synthetic import make_batch  # noqa: E402
from bert_trainer.engine import EngineOptions, PretrainEngine  # noqa: E402
from bert_trainer.model import PRESETS, BertConfig  # noqa: E402
from bert_trainer.model.flops import mfu, train_flops_per_sequence  # noqa: E402

# name -> (config, CPU batch, timed steps per window)
CONFIGS = {
    "tiny": ({**PRESETS["base"], "num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2,
              "intermediate_size": 512}, 32, 20),
    "base": (PRESETS["base"], 8, 3),
    "large": (PRESETS["large"], 4, 2),
}
SEQ, PRED = 128, 20
GPU_BATCH = 16  # NVIDIA's phase-1 batch per GPU (the operator's batchSizePerGpu default)
GPU_STEPS = 20

# Dense (no sparsity) tensor-core peak TFLOPs/s by precision; first matching name fragment wins.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("h200", {"fp16": 989.0, "bf16": 989.0, "fp32": 494.7}),
    ("h100 pcie", {"fp16": 756.0, "bf16": 756.0, "fp32": 378.0}),
    ("h100", {"fp16": 989.0, "bf16": 989.0, "fp32": 494.7}),  # SXM
    ("a100", {"fp16": 312.0, "bf16": 312.0, "fp32": 156.0}),
    ("v100", {"fp16": 125.0, "fp32": 15.7}),  # no bf16 tensor cores
]

REPEATS = 3


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The table's peak for a GPU name such as 'NVIDIA H100 80GB HBM3', or None when unknown."""
    name = device_name.lower()
    for fragment, peaks in PEAK_TFLOPS:
        if fragment in name:
            return peaks.get(precision)
    return None


def detect_device() -> tuple[str, str | None]:
    """('gpu'|'cpu', GPU name or None). Only the first GPU is used."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu", None
    details = tf.config.experimental.get_device_details(gpus[0])
    return "gpu", str(details.get("device_name", gpus[0].name))


def time_steps(steps_fns: dict[str, Callable[[], object]], warmup: int, steps: int) -> dict[str, float]:
    """Seconds per step of each step function after ``warmup`` untimed steps (tracing and
    compilation): the fastest of REPEATS windows. The windows of the implementations
    alternate (ours, theirs, ours, ...), so load from other jobs on a shared machine hits
    both alike rather than one whole measurement. Each function must block until its step
    is done (ours reads the metrics back; keras returns numpy)."""
    for step in steps_fns.values():
        for _ in range(warmup):
            step()
    best = {name: float("inf") for name in steps_fns}
    for _ in range(REPEATS):
        for name, step in steps_fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - t0) / steps)
    return best


def ours_step(cfg: BertConfig, batch: dict, xla: bool, optimizer: str, precision: str,
              fuse_update: bool) -> Callable[[], object]:
    engine = PretrainEngine(cfg, EngineOptions(use_xla=xla, num_train_steps=1000, num_warmup_steps=10,
                                               optimizer=optimizer, precision=precision,
                                               fuse_update_into_xla=fuse_update))
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    return lambda: engine.train_step([tensors])


KERAS_POLICY = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def keras_hub_step(cfg: BertConfig, batch: dict, xla: bool, precision: str) -> Callable[[], object] | None:
    """keras-hub's BertMaskedLM train step, or None without keras-hub."""
    try:
        import keras
        import keras_hub
    except ImportError:
        return None
    # mixed_float16 makes Model.compile wrap the optimizer in a LossScaleOptimizer (dynamic loss scaling, as ours).
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=cfg.vocab_size, num_layers=cfg.num_hidden_layers, num_heads=cfg.num_attention_heads,
            hidden_dim=cfg.hidden_size, intermediate_dim=cfg.intermediate_size, dropout=cfg.hidden_dropout_prob,
            max_sequence_length=cfg.max_position_embeddings, num_segments=cfg.type_vocab_size)
        model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=xla)
    finally:
        keras.config.set_dtype_policy("float32")
    x = {"token_ids": batch["input_ids"], "segment_ids": batch["segment_ids"],
         "padding_mask": batch["input_mask"].astype(bool), "mask_positions": batch["masked_lm_positions"]}
    y, w = batch["masked_lm_ids"], batch["masked_lm_weights"]
    return lambda: model.train_on_batch(x, y, sample_weight=w)


def parse_xla(text: str) -> list[bool]:
    values = {"off": False, "on": True}
    try:
        return [values[part] for part in text.split(",")]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"--xla takes off, on or off,on; got {text!r}") from exc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="tiny,base", help="comma-separated: " + ",".join(CONFIGS))
    ap.add_argument("--xla", type=parse_xla, default=[False, True], help="off, on or off,on (default)")
    ap.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                    help="fp16 = AMP with dynamic loss scaling (the recipe's); bf16 without loss scaling")
    ap.add_argument("--batch", type=int, help="sequences per step (default: 16 on a GPU, per config on CPU)")
    ap.add_argument("--steps", type=int, help="timed steps per window (default: per config on CPU, 20 on a GPU)")
    ap.add_argument("--baseline", choices=["keras_hub", "none"], default="keras_hub",
                    help="none: time bert_trainer only (e.g. on a GPU machine without keras-hub)")
    ap.add_argument("--peak_tflops", type=float, help="device peak for MFU, overriding the GPU name table")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--optimizer", choices=["adam", "lamb"], default="adam",
                    help="ours: adam compares like for like with keras-hub's AdamW; lamb is the recipe's")
    ap.add_argument("--fuse_update", choices=("on", "off"), default="on",
                    help="ours: optimizer update inside the XLA cluster (as keras-hub's jit_compile does; the "
                         "engine's default on one process) or as its own tf.function")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args()
    globals()["REPEATS"] = args.repeats
    names = args.configs.split(",")
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}")
    kind, gpu_name = detect_device()
    peak = args.peak_tflops or (peak_tflops(gpu_name, args.precision) if gpu_name else None)
    device = gpu_name or f"CPU ({os.cpu_count()} cores)"
    print(f"tensorflow {tf.__version__}, {device}, peak {f'{peak:g} TFLOPs/s' if peak else 'unknown'}, "
          f"seq {SEQ}, max_pred {PRED}, {args.precision}, ours: MLM+NSP with {args.optimizer}; "
          f"keras-hub: MLM only with AdamW; best of {REPEATS} windows, alternating", flush=True)
    rows = []
    for name in names:
        cfg_dict, cpu_batch, cpu_steps = CONFIGS[name]
        cfg = BertConfig.from_dict(cfg_dict)
        batch_size = args.batch or (GPU_BATCH if kind == "gpu" else cpu_batch)
        steps = args.steps or (GPU_STEPS if kind == "gpu" else cpu_steps)
        batch = make_batch(0, batch_size, cfg.vocab_size, SEQ, PRED)
        flops = train_flops_per_sequence(cfg, SEQ, PRED)
        for xla in args.xla:
            fns = {"ours": ours_step(cfg, batch, xla, args.optimizer, args.precision, args.fuse_update == "on")}
            theirs_fn = keras_hub_step(cfg, batch, xla, args.precision) if args.baseline == "keras_hub" else None
            if theirs_fn is not None:
                fns["theirs"] = theirs_fn
            seconds = time_steps(fns, 2, steps)
            ours, theirs = seconds["ours"], seconds.get("theirs")
            row = {"config": name, "batch": batch_size, "xla": xla, "precision": args.precision, "device": device,
                   "fuse_update": args.fuse_update == "on", "train_gflops_per_seq": flops / 1e9,
                   "ours_seq_per_s": batch_size / ours,
                   "keras_hub_seq_per_s": (batch_size / theirs) if theirs else None}
            row["ratio_ours_over_keras_hub"] = (row["ours_seq_per_s"] / row["keras_hub_seq_per_s"]
                                                if theirs else None)
            row["ours_tflops_per_s"] = row["ours_seq_per_s"] * flops / 1e12
            row["ours_mfu"] = mfu(row["ours_seq_per_s"], flops, peak * 1e12) if peak else None
            rows.append(row)
            if theirs:
                kh = f"keras-hub {row['keras_hub_seq_per_s']:.1f} seq/s   ratio {row['ratio_ours_over_keras_hub']:.2f}x"
            else:
                kh = "keras-hub skipped" + ("" if args.baseline == "none" else " (not installed)")
            util = f"MFU {100 * row['ours_mfu']:.1f}%" if peak else "MFU - (peak unknown)"
            print(f"{name:5s} batch {batch_size:3d} xla={'on ' if xla else 'off'}  bert_trainer "
                  f"{row['ours_seq_per_s']:8.1f} seq/s {row['ours_tflops_per_s']:7.2f} TFLOPs/s {util}   {kh}",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
