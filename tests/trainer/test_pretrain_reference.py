"""Pretraining equals references step by step, without PyTorch.

* The trainer's PretrainEngine replays the protocol of bench/pretrain_reference.py (same tiny config, initial
  weights, synthetic records read back through parse_batch, optimizer, clip) and matches, step by step, the
  losses and gradient norms transformers' BertForPreTraining produced, stored in data/pretrain_reference.json
  (regenerate: ``python bench/pretrain_reference.py --write-reference tests/trainer/data/pretrain_reference.json``).
* Our NVLAMB equals the LAMB update written out below in NumPy (You et al. 2020, Algorithm 2, with NVIDIA's
  pre-normalization by the global gradient norm), and the engine's fp32 accumulation of 4 micro-batches steps as
  that reference does on the one big batch's gradient.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.data.schema import parse_batch
from bert_trainer.data.synthetic import write_synthetic_records
from bert_trainer.engine import EngineOptions, PretrainEngine, TrainEngine
from bert_trainer.model import BertConfig
from bert_trainer.optim import NVLamb

STORED = json.loads((Path(__file__).parent / "data" / "pretrain_reference.json").read_text())
PROTOCOL = STORED["protocol"]
METRICS = ("loss", "mlm_loss", "nsp_loss", "grad_norm")


def fingerprint(items: list[dict[str, np.ndarray]]) -> str:
    """bench/pretrain_reference.py's fingerprint: sha256 over names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for item in items:
        for name in sorted(item):
            value = np.ascontiguousarray(item[name])
            digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
            digest.update(value.tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> list[dict[str, np.ndarray]]:
    assert PROTOCOL["records"] == "synthetic"  # (the bench's --records prepare-data is for show, not stored)
    seq, pred, size = PROTOCOL["max_seq_length"], PROTOCOL["max_predictions_per_seq"], PROTOCOL["batch_size"]
    files = write_synthetic_records(str(tmp_path_factory.mktemp("records")), num_files=1,
                                    examples_per_file=size * PROTOCOL["steps"],
                                    vocab_size=PROTOCOL["bert_config"]["vocab_size"], max_seq_length=seq,
                                    max_predictions_per_seq=pred, seed=PROTOCOL["records_seed"])
    ds = tf.data.TFRecordDataset(files).batch(size).map(lambda s: parse_batch(s, seq, pred))
    out = [{k: v.numpy() for k, v in b.items()} for b in ds]
    assert fingerprint(out) == STORED["batches_sha256"], "the records differ from the reference's: regenerate it"
    return out


@pytest.mark.parametrize("optimizer", PROTOCOL["optimizers"])
def test_pretraining_steps_equal_transformers_bert_for_pretraining(batches, optimizer):
    keys = ("beta_1", "beta_2", "epsilon", "weight_decay_rate", "clip_norm", "learning_rate", "num_warmup_steps",
            "num_train_steps")
    opts = EngineOptions(optimizer=optimizer, precision="fp32", seed=PROTOCOL["model_seed"],
                         **{key: PROTOCOL[key] for key in keys})
    engine = PretrainEngine(BertConfig.from_dict(PROTOCOL["bert_config"]), opts)
    initial = {name: var.numpy() for name, var in engine.model.named_variables().items()}
    assert fingerprint([initial]) == STORED["initial_weights_sha256"], "initial weights differ: regenerate"
    tolerance = STORED["tolerance"]
    for step, (batch, ref) in enumerate(zip(batches, STORED["reference"][optimizer], strict=True)):
        ours = engine.train_step([batch])
        for key in METRICS:
            assert ours[key] == pytest.approx(ref[key], rel=tolerance), (optimizer, step, key)
    # The final weights, as two figures per tensor (how far it moved; how far along its initial direction, where
    # weight decay pulls), each within weight_tolerance of the reference's movement: the losses alone hardly see
    # weight decay at 0.01 in 8 steps.
    final = {name: var.numpy() for name, var in engine.model.named_variables().items()}
    reference = STORED["final_weights"][optimizer]
    assert sorted(reference) == sorted(final)
    for name, (moved, along) in reference.items():
        w0 = initial[name].astype(np.float64)
        delta = final[name].astype(np.float64) - w0
        norm0 = float(np.linalg.norm(w0))
        ours_moved, ours_along = float(np.linalg.norm(delta)), (float(np.sum(delta * w0)) / norm0 if norm0 else 0.0)
        allowed = STORED["weight_tolerance"] * max(moved, STORED["moved_floor"])
        assert abs(ours_moved - moved) <= allowed and abs(ours_along - along) <= allowed, (
            optimizer, name, ours_moved, moved, ours_along, along)


# ----- LAMB / NVLAMB against the update written out -----------------------------------------------------------------
NAMES = ("layer/dense/kernel", "layer/dense/bias", "layer/LayerNorm/gamma")
HP = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-6, "weight_decay_rate": 0.01}


def lamb_reference(weights: list[np.ndarray], grads: list[np.ndarray], state: dict, lr: float, decay: list[bool],
                   *, prenormalize: bool) -> list[np.ndarray]:
    """One LAMB step in float64 (You et al. 2020, Algorithm 2): m, v with bias correction, r = m^/(sqrt(v^)+eps),
    u = r + wd w; a decayed tensor steps lr * ||w||/||u|| * u (ratio 1 where a norm is 0), LayerNorm and biases
    (no decay) lr * r, as Google's and NVIDIA's implementations exclude them from layer adaptation. NVLAMB
    (prenormalize) first divides the gradient by its global norm when that exceeds 1 (apex FusedLAMB,
    max_grad_norm=1)."""
    b1, b2, eps, wd = HP["beta_1"], HP["beta_2"], HP["epsilon"], HP["weight_decay_rate"]
    if prenormalize:
        norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
        grads = [g / max(norm, 1.0) for g in grads]
    state["t"] = t = state.get("t", 0) + 1
    out = []
    for i, (w, g) in enumerate(zip(weights, grads)):
        w, g = w.astype(np.float64), g.astype(np.float64)
        m = state[("m", i)] = b1 * state.get(("m", i), 0.0) + (1 - b1) * g
        v = state[("v", i)] = b2 * state.get(("v", i), 0.0) + (1 - b2) * g * g
        update = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        ratio = 1.0
        if decay[i]:
            update = update + wd * w
            w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        out.append(w - lr * ratio * update)
    return out


def start(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(0, 0.5, (6, 4)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32),
            (1 + rng.normal(0, 0.1, 4)).astype(np.float32)]


@pytest.mark.parametrize("scale", [0.1, 40.0], ids=["global-norm-below-1", "global-norm-above-1"])
def test_nvlamb_is_the_written_out_lamb_update_with_pre_normalization(scale):
    """Below a global norm of 1 NVLAMB is You et al.'s LAMB; above it, LAMB of the gradient divided by its norm.
    (The norm changes from step to step: a constant factor would cancel out of m/sqrt(v).)"""
    rng = np.random.default_rng(5)
    values = start(rng)
    named = {n: tf.Variable(v) for n, v in zip(NAMES, values)}
    schedule = lambda step: 0.05 * (1.0 - tf.cast(step, tf.float32) / 10.0)  # noqa: E731 - decays per step
    ours = NVLamb(named, schedule, HP["beta_1"], HP["beta_2"], HP["epsilon"], HP["weight_decay_rate"])
    decay = [not ("LayerNorm" in n or n.endswith("bias")) for n in NAMES]
    assert decay == [True, False, False]
    nv_state: dict = {}
    lamb_state: dict = {}
    nv, lamb = list(values), list(values)
    for step, factor in enumerate((1.0, 0.05, 3.0, 0.5)):
        raw = [rng.normal(0, 1, v.shape) for v in values]
        norm = np.sqrt(sum(np.sum(g ** 2) for g in raw))
        grads = [(g * scale * factor / norm).astype(np.float32) for g in raw]  # global norm: scale * factor
        ours.apply_gradients([tf.constant(g) for g in grads], list(named.values()), tf.constant(step, tf.int64))
        lr = 0.05 * (1.0 - step / 10.0)
        nv = lamb_reference(nv, grads, nv_state, lr, decay, prenormalize=True)
        lamb = lamb_reference(lamb, grads, lamb_state, lr, decay, prenormalize=False)
    for name, want, plain in zip(NAMES, nv, lamb):
        np.testing.assert_allclose(named[name].numpy(), want, rtol=2e-5, atol=1e-6, err_msg=name)
        if scale < 1:  # pre-normalization leaves a gradient inside the unit ball alone
            np.testing.assert_allclose(named[name].numpy(), plain, rtol=2e-5, atol=1e-6, err_msg=name)
    if scale > 1:  # and changes the outcome otherwise: the two references are told apart
        assert max(np.max(np.abs(a - b)) for a, b in zip(nv, lamb)) > 1e-3


class Linear(tf.Module):
    """y = (x W + b) * gamma: a kernel (decayed, trust ratio), a bias and a LayerNorm-named scale (neither)."""

    def __init__(self, values: list[np.ndarray]) -> None:
        super().__init__()
        self.vars = {n: tf.Variable(v, name=n.replace("/", "_")) for n, v in zip(NAMES, values)}

    def named_variables(self) -> dict[str, tf.Variable]:
        return dict(self.vars)


def squared_error(model: Linear, features, training: bool, dtype: tf.DType) -> dict[str, tf.Tensor]:
    v = model.vars
    pred = (tf.matmul(features["x"], v[NAMES[0]]) + v[NAMES[1]]) * v[NAMES[2]]
    return {"loss": 0.5 * tf.reduce_mean(tf.reduce_sum(tf.square(pred - features["y"]), axis=1))}


def big_batch_gradient(values: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """d/dW, d/db, d/dgamma of squared_error on the whole batch, by hand in float64."""
    w, b, gamma = (v.astype(np.float64) for v in values)
    z = x @ w + b
    r = (z * gamma - y) / len(x)
    return [x.T @ (r * gamma), np.sum(r * gamma, axis=0), np.sum(r * z, axis=0)]


@pytest.mark.parametrize("clip_norm", [0.0, 1.0], ids=["nvlamb-pre-normalizes", "clipped-first"])
def test_four_accumulated_micro_batches_step_as_the_reference_on_the_big_batch(clip_norm):
    """The engine sums 4 micro-batch gradients in fp32 accumulators and averages them: NVLAMB then steps as the
    written-out reference does on the gradient of the batch of 16 (the clip, when on, first)."""
    rng = np.random.default_rng(11)
    values = start(rng)
    opts = EngineOptions(optimizer="lamb", learning_rate=0.05, num_train_steps=10, num_warmup_steps=0,
                         num_accumulation_steps=4, clip_norm=clip_norm, weight_decay_rate=HP["weight_decay_rate"])
    engine = TrainEngine(Linear(values), squared_error, opts)
    decay = [True, False, False]
    state: dict = {}
    want = [v.astype(np.float64) for v in values]
    for step in range(3):
        x = rng.normal(0, 1, (16, 6)).astype(np.float32)
        y = (rng.normal(0, 3, (16, 4)) + 5).astype(np.float32)  # far from the fit: a global norm well above 1
        grads = big_batch_gradient(want, x, y)
        norm = float(np.sqrt(sum(np.sum(g ** 2) for g in grads)))
        assert norm > 1.5
        if clip_norm:
            grads = [g * clip_norm / max(norm, clip_norm) for g in grads]
        out = engine.train_step([{"x": x[i:i + 4], "y": y[i:i + 4]} for i in range(0, 16, 4)])
        assert out["grad_norm"] == pytest.approx(norm, rel=1e-5)
        want = lamb_reference(want, grads, state, 0.05 * (1.0 - step / 10.0), decay, prenormalize=True)
        for name, expected in zip(NAMES, want):
            np.testing.assert_allclose(engine.model.vars[name].numpy(), expected, rtol=2e-5, atol=1e-6,
                                       err_msg=f"step {step} {name}")
