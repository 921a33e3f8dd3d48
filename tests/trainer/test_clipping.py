"""Gradient clipping to a global norm (--clip_norm, default 1.0, as Google's optimization.create_optimizer and
NVIDIA's recipe): the step's gradient is clipped once, after accumulation and unscaling, before the update."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.data.synthetic import make_batch
from bert_trainer.engine import EngineOptions, PretrainEngine
from conftest import PRED, SEQ


def options(**overrides) -> EngineOptions:
    base = dict(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=0, optimizer="adam")
    return EngineOptions(**{**base, **overrides})


def weights(engine: PretrainEngine) -> dict[str, np.ndarray]:
    return {name: var.numpy() for name, var in engine.model.named_variables().items()}


def test_a_clipped_step_is_the_step_of_the_gradient_scaled_to_the_norm(tiny_config):
    """Clipping at c updates as the unclipped engine does with the gradient times c / its norm (the slots too),
    and the step reports the norm before clipping."""
    batch = make_batch(3, 16, tiny_config.vocab_size, SEQ, PRED)
    clipped = PretrainEngine(tiny_config, options(clip_norm=0.05))
    plain = PretrainEngine(tiny_config, options(clip_norm=0.0))
    grads, _ = plain._grad_fn(batch)
    norm = float(tf.linalg.global_norm(grads))
    assert norm > 0.05  # the clip bites

    reported = clipped.train_step([batch])["grad_norm"]
    assert reported == pytest.approx(norm, rel=1e-5)
    finite, unclipped_norm = plain._update_fn([g * (0.05 / norm) for g in grads])
    assert bool(finite) and float(unclipped_norm) == pytest.approx(0.05, rel=1e-5)
    for name, value in weights(clipped).items():
        np.testing.assert_allclose(value, weights(plain)[name], rtol=1e-5, atol=1e-7, err_msg=name)
    for a, b in zip(clipped.optimizer.m + clipped.optimizer.v, plain.optimizer.m + plain.optimizer.v):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-9)


def test_below_the_norm_nothing_changes_and_zero_turns_it_off(tiny_config):
    batch = make_batch(4, 16, tiny_config.vocab_size, SEQ, PRED)
    loose = PretrainEngine(tiny_config, options(clip_norm=1e6))
    off = PretrainEngine(tiny_config, options(clip_norm=0.0))
    assert loose.train_step([batch])["grad_norm"] == pytest.approx(off.train_step([batch])["grad_norm"], rel=1e-6)
    for name, value in weights(loose).items():
        np.testing.assert_array_equal(value, weights(off)[name], err_msg=name)


def test_the_accumulated_gradient_is_clipped_not_each_micro_batch(tiny_config):
    """4 micro-batches of 8 step exactly as one batch of 32 with the clip biting: the clip sees their mean."""
    k, micro = 4, 8
    accumulated = PretrainEngine(tiny_config, options(num_accumulation_steps=k, clip_norm=0.05))
    single = PretrainEngine(tiny_config, options(clip_norm=0.05))
    for step in range(2):
        big = make_batch(200 + step, k * micro, tiny_config.vocab_size, SEQ, PRED, fixed_length=True)
        parts = [{key: v[i * micro:(i + 1) * micro] for key, v in big.items()} for i in range(k)]
        a, b = accumulated.train_step(parts), single.train_step([big])
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4) and a["grad_norm"] > 0.05
    for name, value in weights(accumulated).items():
        np.testing.assert_allclose(value, weights(single)[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_fp16_gradients_are_unscaled_before_the_clip(tiny_config):
    """The norm the clip sees is the true gradient's (fp32's, to fp16 rounding), not the loss-scaled one."""
    batch = make_batch(5, 16, tiny_config.vocab_size, SEQ, PRED)
    fp16 = PretrainEngine(tiny_config, options(precision="fp16"))
    fp32 = PretrainEngine(tiny_config, options())
    assert fp16.train_step([batch])["grad_norm"] == pytest.approx(fp32.train_step([batch])["grad_norm"], rel=2e-2)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "x"])
def test_a_clip_norm_that_is_not_a_finite_number_at_least_zero_exits_2_naming_it(run_cli, records, tmp_path, value):
    from conftest import tiny_flags

    result = run_cli(tiny_flags(records, str(tmp_path / "out")) + ["--clip_norm", value])
    assert result.returncode == 2 and "--clip_norm" in result.stderr, result.stderr[-500:]
