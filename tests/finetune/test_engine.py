"""Fine-tuning through the shared engine: accumulation is exact, a padding cut changes nothing the
classifier sees, a step with non-finite gradients is skipped, and the step is one compiled call."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from bert_trainer.dist import SingleProcess  # noqa: E402
from bert_trainer.engine import EngineOptions, TrainEngine  # noqa: E402
from bert_trainer.finetune.classifier import BertClassifier, BertSpanHead  # noqa: E402
from bert_trainer.finetune.losses import classification_loss, span_loss  # noqa: E402
from bert_trainer.finetune.loop import train_dataset, trim_padding  # noqa: E402
from bert_trainer.model import BertConfig  # noqa: E402

# No dropout: two runs that must agree draw no random masks.
TINY = BertConfig.from_dict({"vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 64, "max_position_embeddings": 64, "hidden_dropout_prob": 0.0,
                             "attention_probs_dropout_prob": 0.0})
SEQ = 32


def pairs(n: int, seed: int, lengths=(9, 20)) -> dict[str, np.ndarray]:
    """Classification features padded to SEQ, real lengths drawn from `lengths`."""
    rng = np.random.default_rng(seed)
    real = rng.integers(lengths[0], lengths[1] + 1, n)
    mask = (np.arange(SEQ)[None, :] < real[:, None]).astype(np.int32)
    return {"input_ids": (rng.integers(5, TINY.vocab_size, (n, SEQ)) * mask).astype(np.int32), "input_mask": mask,
            "segment_ids": ((np.arange(SEQ)[None, :] >= real[:, None] // 2) * mask).astype(np.int32),
            "labels": rng.integers(0, 2, n).astype(np.int32)}


def options(**overrides) -> EngineOptions:
    return EngineOptions(**{"learning_rate": 1e-3, "num_train_steps": 10, "num_warmup_steps": 0, "optimizer": "adam",
                            **overrides})


def test_k_accumulated_micro_batches_equal_one_k_times_batch_for_a_classifier():
    k, micro = 2, 8
    accumulated = TrainEngine(BertClassifier(TINY, 2, seed=3), classification_loss, options(num_accumulation_steps=k))
    single = TrainEngine(BertClassifier(TINY, 2, seed=3), classification_loss, options())
    start = {n: v.numpy().copy() for n, v in single.model.named_variables().items()}
    for step in range(3):
        big = {key: tf.constant(v) for key, v in pairs(k * micro, seed=step).items()}
        parts = [{key: v[i * micro:(i + 1) * micro] for key, v in big.items()} for i in range(k)]
        m_acc, m_one = accumulated.train_step(parts), single.train_step([big])
        assert m_acc["loss"] == pytest.approx(m_one["loss"], rel=1e-5)  # a mean loss: micro-batch means average to it
    assert int(accumulated.step.numpy()) == int(single.step.numpy()) == 3
    for (name, va), vb in zip(accumulated.model.named_variables().items(), single.model.named_variables().values()):
        moved = np.abs(vb.numpy() - start[name]).max()
        assert moved > 0, name
        assert np.abs(va.numpy() - vb.numpy()).max() <= 1e-4 * max(moved, 1e-3) + 1e-6, name


def test_trimming_padding_leaves_the_classifier_logits_unchanged():
    model = BertClassifier(TINY, 3, seed=1)
    batch = {key: tf.constant(v) for key, v in pairs(8, seed=5, lengths=(9, 20)).items()}
    cut = trim_padding(batch, 8)
    longest = int(batch["input_mask"].numpy().sum(1).max())
    assert cut["input_ids"].shape == (8, -(-longest // 8) * 8) and cut["labels"].shape == (8,)
    full = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    short = model(cut["input_ids"], cut["input_mask"], cut["segment_ids"])
    np.testing.assert_allclose(short.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    # Never longer than the padded length, never empty.
    assert trim_padding(batch, 64)["input_ids"].shape == (8, SEQ)


def test_the_seeded_shuffle_replays_after_a_skip():
    train = pairs(40, seed=2)
    whole = [b["labels"].numpy() for b in train_dataset(train, 8, 7, SingleProcess()).take(9)]
    resumed = [b["labels"].numpy() for b in train_dataset(train, 8, 7, SingleProcess(), skip_batches=6).take(3)]
    for a, b in zip(whole[6:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(whole[:5], whole[5:9]))  # epochs reshuffle


def test_a_step_with_non_finite_gradients_is_skipped_in_fp32():
    def exploding(model, batch, training, dtype):
        return {"loss": classification_loss(model, batch, training, dtype)["loss"] * float("inf")}

    engine = TrainEngine(BertClassifier(TINY, 2), exploding, options())
    before = {n: v.numpy().copy() for n, v in engine.model.named_variables().items()}
    metrics = engine.train_step([{key: tf.constant(v) for key, v in pairs(4, seed=1).items()}])
    assert metrics["grads_finite"] == 0.0 and int(engine.step.numpy()) == 1
    for name, var in engine.model.named_variables().items():
        assert np.array_equal(var.numpy(), before[name]), name
    assert all(np.all(m.numpy() == 0) for m in engine.optimizer.m)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_squad_step_is_one_compiled_call_traced_once(precision):
    engine = TrainEngine(BertSpanHead(TINY), span_loss, options(precision=precision))
    assert engine.fused
    rng = np.random.default_rng(0)
    for step in range(3):
        batch = {**{key: tf.constant(v) for key, v in pairs(4, seed=step).items() if key != "labels"},
                 "start_positions": tf.constant(rng.integers(1, 9, 4), tf.int32),
                 "end_positions": tf.constant(rng.integers(9, 18, 4), tf.int32)}
        metrics = engine.train_step([batch])
        assert np.isfinite(metrics["loss"]) and metrics["grads_finite"] == 1.0
    assert engine._fused_fn.experimental_get_tracing_count() == 1
    assert int(engine.optimizer.iterations.numpy()) == 3


def test_fine_tune_flags_map_to_the_engine():
    from bert_trainer.finetune.loop import engine_options

    args = argparse.Namespace(learning_rate=3e-5, warmup_proportion=0.1, num_accumulation_steps=4, optimizer="adam",
                              weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6, precision="bf16",
                              use_xla=True, allreduce_post_accumulation=True, seed=7, clip_norm=0.5,
                              adam_bias_correction=True)
    opts = engine_options(args, 250)
    assert (opts.num_train_steps, opts.num_warmup_steps, opts.num_accumulation_steps) == (250, 25, 4)
    assert (opts.optimizer, opts.precision, opts.use_xla, opts.allreduce_post_accumulation) == ("adam", "bf16", True, True)
    assert opts.clip_norm == 0.5
    assert opts.adam_bias_correction is True


def test_a_trimmed_pipeline_traces_the_step_once_for_every_length():
    """The pipeline's spec (sequence length left open) given to the engine, then batches cut to 8, 16 and 32 tokens:
    one trace serves them all. The batches are cut here, not drawn from the shuffled pipeline: which lengths its
    first batches have depends on TensorFlow's global seed, which another test in the same process may have set."""
    engine = TrainEngine(BertClassifier(TINY, 2), classification_loss, options())
    engine.expect_batches(train_dataset(pairs(8, seed=4), 4, 1, SingleProcess(), trim_to=8).element_spec)
    lengths = set()
    for step, (shortest, longest) in enumerate(((3, 8), (20, 30), (9, 16))):
        batch = trim_padding({key: tf.constant(v) for key, v in pairs(4, seed=step, lengths=(shortest, longest)).items()},
                             8)
        lengths.add(int(batch["input_ids"].shape[1]))
        assert np.isfinite(engine.train_step([batch])["loss"])
    assert lengths == {8, 16, 32}  # the cut gave batches of three lengths...
    assert engine._fused_fn.experimental_get_tracing_count() == 1  # ...and one trace served them all


def test_fine_tune_traces_its_step_once(tmp_path, monkeypatch):
    from bert_trainer.finetune import loop
    from bert_trainer.reports import ReportWriter

    engines: list[TrainEngine] = []

    class Recorded(TrainEngine):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(loop, "TrainEngine", Recorded)
    args = argparse.Namespace(learning_rate=1e-3, warmup_proportion=0.0, num_accumulation_steps=1, optimizer="adam",
                              weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6, precision="fp32",
                              use_xla=False, allreduce_post_accumulation=True, seed=3, clip_norm=1.0,
                              adam_bias_correction=False, train_batch_size=2, num_train_epochs=1.0,
                              output_dir=str(tmp_path / "out"), keep_checkpoint_max=0, report_every_steps=100,
                              save_checkpoints_steps=100)
    train = pairs(24, seed=4, lengths=(2, 20))
    seen = {int(b["input_ids"].shape[1]) for b in train_dataset(train, 2, 3, SingleProcess(), trim_to=8).take(12)}
    assert len(seen) >= 2  # the run's batches (its seed, its batch size) come in several lengths
    result = loop.fine_tune(BertClassifier(TINY, 2), train, classification_loss, args, SingleProcess(),
                            ReportWriter(args.output_dir, chief=True), str(tmp_path / "scratch"), trim_to=8)
    assert result["steps"] == 12
    assert engines[0]._fused_fn.experimental_get_tracing_count() == 1


def test_glue_training_batches_are_cut_to_their_exact_longest_pair_without_xla():
    from bert_trainer.tasks.glue.driver import TRIM_MULTIPLE_XLA, train_cut

    assert train_cut(False) == 1  # one trace serves every length: rounding would only add padded tokens
    assert train_cut(True) == TRIM_MULTIPLE_XLA  # XLA compiles a program per length: few lengths
    batch = {key: tf.constant(v) for key, v in pairs(8, seed=5, lengths=(9, 20)).items()}
    longest = int(batch["input_mask"].numpy().sum(1).max())
    assert trim_padding(batch, train_cut(False))["input_ids"].shape == (8, longest)
