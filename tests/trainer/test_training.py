"""Training behaviour a user relies on: loss falls, accumulation is exact, fp16/bf16/XLA work."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.data.pipeline import list_record_files, pretraining_dataset
from bert_trainer.data.synthetic import make_batch
from bert_trainer.engine import EngineOptions, PretrainEngine
from conftest import PRED, SEQ


def eval_loss(engine: PretrainEngine, batch) -> float:
    return float(engine.evaluate([batch], 1)["loss"])


def train(engine: PretrainEngine, records, steps: int, batch_size: int = 32) -> list[float]:
    ds = pretraining_dataset(list_record_files(records["train"]), batch_size, SEQ, PRED, seed=3)
    it = iter(ds)
    return [engine.train_step([next(it) for _ in range(engine.k)])["loss"] for _ in range(steps)]


def test_loss_falls_clearly_within_100_steps(tiny_config, records):
    optimizer, lr = "lamb", 2e-2
    engine = PretrainEngine(tiny_config, EngineOptions(learning_rate=lr, num_train_steps=100, num_warmup_steps=10,
                                                       optimizer=optimizer))
    held_out = next(iter(pretraining_dataset(list_record_files(records["eval"]), 64, SEQ, PRED, is_training=False)))
    before = eval_loss(engine, held_out)
    t0 = time.perf_counter()
    losses = train(engine, records, 100)
    after = eval_loss(engine, held_out)
    print(f"{optimizer}: held-out loss {before:.3f} -> {after:.3f} in 100 steps ({time.perf_counter() - t0:.1f}s)")
    assert before > 4.5  # ~ln(vocab) at init
    assert after < before - 0.6, (before, after)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    assert int(engine.step.numpy()) == 100


@pytest.mark.parametrize("optimizer", ["lamb", "adam"])
def test_k_accumulated_micro_batches_equal_one_k_times_batch(tiny_config, optimizer):
    k, micro = 4, 8
    opts = dict(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=0, optimizer=optimizer)
    accumulated = PretrainEngine(tiny_config, EngineOptions(num_accumulation_steps=k, **opts))
    single = PretrainEngine(tiny_config, EngineOptions(num_accumulation_steps=1, **opts))
    for step in range(3):
        # fixed_length: every example has the same number of masked tokens, so the mean
        # of micro-batch losses equals the big batch's loss exactly.
        big = make_batch(100 + step, k * micro, tiny_config.vocab_size, SEQ, PRED, fixed_length=True)
        micro_batches = [{key: v[i * micro:(i + 1) * micro] for key, v in big.items()} for i in range(k)]
        m_acc = accumulated.train_step(micro_batches)
        m_one = single.train_step([big])
        assert m_acc["loss"] == pytest.approx(m_one["loss"], rel=1e-5)
    start = PretrainEngine(tiny_config, EngineOptions(**opts)).model.named_variables()
    for (name, va), vb, v0 in zip(accumulated.model.named_variables().items(),
                                  single.model.named_variables().values(), start.values()):
        moved = np.abs(vb.numpy() - v0.numpy()).max()
        diff = np.abs(va.numpy() - vb.numpy()).max()
        assert moved > 0, name
        assert diff <= 1e-4 * max(moved, 1e-3) + 1e-6, f"{name}: accumulated vs big batch differ by {diff}"


def test_fp16_trains_and_skips_overflowing_steps(tiny_config, records):
    engine = PretrainEngine(tiny_config, EngineOptions(learning_rate=2e-2, num_train_steps=60, num_warmup_steps=5,
                                                       precision="fp16", loss_scale_growth_interval=20))
    # Batches of 16: fp16 kernels are emulated on a CPU (about 70x fp32's step time); 60 steps of 16 still drop the
    # loss about twice the margin asserted.
    ds = pretraining_dataset(list_record_files(records["train"]), 16, SEQ, PRED, seed=3)
    it = iter(ds)
    steps = [engine.train_step([next(it)]) for _ in range(60)]
    losses = [m["loss"] for m in steps]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.4
    # The scale followed the rule at every step: doubled after each 20 clean steps in a row, halved (and the run
    # restarted) by a step whose gradients overflowed. With no overflow that is 2^15 * 2^3 after 60 steps; whether a
    # step of random tiny batches overflows depends on the draw, so the rule is replayed on what each step reported.
    expected, run, grown = 2.0 ** 15, 0, 0
    for metrics in steps:
        if metrics["grads_finite"]:
            run += 1
            if run == 20:
                expected, run, grown = expected * 2, 0, grown + 1
        else:
            expected, run = expected / 2, 0
    assert float(engine.loss_scale.scale.numpy()) == expected
    assert grown >= 1, "the scale never grew in 60 steps"

    # Force an overflow: the update must be skipped (weights unchanged) and the scale halved.
    engine.loss_scale.scale.assign(3e38)
    before = {n: v.numpy().copy() for n, v in engine.model.named_variables().items()}
    metrics = engine.train_step([make_batch(5, 16, tiny_config.vocab_size, SEQ, PRED)])
    assert metrics["grads_finite"] == 0.0
    assert float(engine.loss_scale.scale.numpy()) == pytest.approx(1.5e38)
    for name, var in engine.model.named_variables().items():
        assert np.array_equal(var.numpy(), before[name]), name
    assert all(np.isfinite(v.numpy()).all() for v in engine.optimizer.m + engine.optimizer.v)


def test_bf16_trains(tiny_config, records):
    engine = PretrainEngine(tiny_config, EngineOptions(learning_rate=2e-2, num_train_steps=40, num_warmup_steps=5,
                                                       precision="bf16"))
    assert engine.loss_scale is None  # bf16 has fp32's range: no loss scaling
    losses = train(engine, records, 40, batch_size=16)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3
    assert all(v.dtype == tf.float32 for v in engine.model.named_variables().values())  # fp32 master weights


def test_xla_matches_eager_graph_and_trains(tiny_config, records):
    batch = make_batch(11, 16, tiny_config.vocab_size, SEQ, PRED)
    plain = PretrainEngine(tiny_config, EngineOptions(learning_rate=2e-2, num_train_steps=30, num_warmup_steps=5))
    xla = PretrainEngine(tiny_config, EngineOptions(learning_rate=2e-2, num_train_steps=30, num_warmup_steps=5,
                                                    use_xla=True))
    assert xla.train_step([batch])["loss"] == pytest.approx(plain.train_step([batch])["loss"], rel=1e-4)
    losses = train(xla, records, 29, batch_size=16)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3


def test_xla_with_fp16_loss_scaling_runs_as_one_compiled_step(tiny_config):
    engine = PretrainEngine(tiny_config, EngineOptions(learning_rate=2e-2, num_train_steps=10, num_warmup_steps=2,
                                                       precision="fp16", use_xla=True, loss_scale_growth_interval=3,
                                                       fuse_update_into_xla=True))
    assert engine.fused  # one process, no accumulation: forward, backward and update in one XLA cluster
    losses = [engine.train_step([make_batch(s, 16, tiny_config.vocab_size, SEQ, PRED)])["loss"] for s in range(6)]
    assert all(np.isfinite(losses)) and int(engine.step.numpy()) == 6
    assert float(engine.loss_scale.scale.numpy()) == 2.0 ** 15 * 4  # grew after steps 3 and 6
