"""Optimizer facts from the NVIDIA recipe: NVLAMB pre-normalization, bias correction,
weight-decay exclusions, and BERT's warmup + polynomial decay schedule."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.optim import AdamW, NVLamb, WarmupPolyDecay


def make(cls, names=("layer/dense/kernel", "layer/LayerNorm/gamma", "layer/dense/bias"), wd=0.01, lr=0.1):
    rng = np.random.default_rng(0)
    named = {n: tf.Variable(rng.normal(size=(4, 3)).astype(np.float32)) for n in names}
    return named, cls(named, lambda step: tf.constant(lr), 0.9, 0.999, 1e-6, wd)


def test_schedule_warms_up_linearly_then_decays_to_zero():
    s = WarmupPolyDecay(1e-3, num_train_steps=100, num_warmup_steps=10)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(5e-4)
    assert float(s(10)) == pytest.approx(1e-3 * 0.9)
    assert float(s(55)) == pytest.approx(1e-3 * 0.45)
    assert float(s(100)) == pytest.approx(0.0, abs=1e-12)


def test_nvlamb_update_ignores_gradient_scale_and_is_layerwise_trust_ratio():
    named_a, opt_a = make(NVLamb)
    named_b, opt_b = make(NVLamb)
    grads = [tf.constant(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)) for _ in range(3)]
    w0 = {n: v.numpy().copy() for n, v in named_a.items()}
    opt_a.apply_gradients(grads, list(named_a.values()), tf.constant(1))
    opt_b.apply_gradients([g * 1000.0 for g in grads], list(named_b.values()), tf.constant(1))
    for (n, a), b in zip(named_a.items(), named_b.values()):
        # Pre-normalization by the global norm: a 1000x gradient (e.g. an unscaled loss) changes nothing.
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=n)
    kernel = "layer/dense/kernel"
    step = np.linalg.norm(named_a[kernel].numpy() - w0[kernel])
    # Trust ratio: the kernel moves by lr * ||w|| (update rescaled to the weight norm).
    assert step == pytest.approx(0.1 * np.linalg.norm(w0[kernel]), rel=1e-4)


def test_weight_decay_skips_layernorm_and_bias():
    named, opt = make(AdamW, lr=0.1, wd=0.5)
    zeros = [tf.zeros((4, 3)) for _ in named]
    before = {n: v.numpy().copy() for n, v in named.items()}
    opt.apply_gradients(zeros, list(named.values()), tf.constant(1))
    assert not np.allclose(named["layer/dense/kernel"].numpy(), before["layer/dense/kernel"])  # decayed
    np.testing.assert_array_equal(named["layer/LayerNorm/gamma"].numpy(), before["layer/LayerNorm/gamma"])
    np.testing.assert_array_equal(named["layer/dense/bias"].numpy(), before["layer/dense/bias"])


def test_nvlamb_first_step_has_bias_correction():
    named, opt = make(NVLamb, names=("x/LayerNorm/beta",), lr=0.01)  # excluded: plain Adam step, no trust ratio
    w0 = named["x/LayerNorm/beta"].numpy().copy()
    g = np.full((4, 3), 0.01, np.float32)  # global norm < 1: not rescaled
    opt.apply_gradients([tf.constant(g)], list(named.values()), tf.constant(1))
    # With bias correction, step one moves each weight by ~lr * sign(g) (m̂/sqrt(v̂) = 1).
    np.testing.assert_allclose(w0 - named["x/LayerNorm/beta"].numpy(), 0.01, rtol=1e-3)


def test_adamw_is_googles_update_and_an_eager_apply_is_one_compiled_function():
    named, opt = make(AdamW, lr=0.1, wd=0.5)
    w0 = {n: v.numpy().copy() for n, v in named.items()}
    rng = np.random.default_rng(2)
    grads = [[rng.normal(size=(4, 3)).astype(np.float32) for _ in named] for _ in range(3)]
    m = {n: np.zeros((4, 3)) for n in named}
    v = {n: np.zeros((4, 3)) for n in named}
    w = {n: w0[n].astype(np.float64) for n in named}
    for step, gs in enumerate(grads):
        opt.apply_gradients([tf.constant(g) for g in gs], list(named.values()), tf.constant(step))
        for (n, _), g in zip(named.items(), gs):  # Google's AdamWeightDecay, no bias correction
            m[n] = 0.9 * m[n] + 0.1 * g
            v[n] = 0.999 * v[n] + 0.001 * g * g
            update = m[n] / (np.sqrt(v[n]) + 1e-6) + (0.5 * w[n] if n == "layer/dense/kernel" else 0.0)
            w[n] = w[n] - 0.1 * update
    for n, var in named.items():
        # The fused kernel takes 1 - beta_2 in fp32 (0.00099999), the formula in fp64: 1e-5 apart at most.
        np.testing.assert_allclose(var.numpy(), w[n], rtol=0, atol=2e-5, err_msg=n)
    assert opt._compiled.experimental_get_tracing_count() == 1  # not one eager op per variable and step
    assert int(opt.iterations.numpy()) == 3
