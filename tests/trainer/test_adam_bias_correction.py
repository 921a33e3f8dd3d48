"""Adam's bias correction (--adam_bias_correction / --noadam_bias_correction): off by default, as Google's
AdamWeightDecayOptimizer; on, torch.optim.AdamW's update. Each setting, through the engine (plain and XLA), against
a numpy write-out of its formula over one and several steps."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.cli import build_parser
from bert_trainer.engine import EngineOptions, TrainEngine
from bert_trainer.finetune.loop import engine_options as finetune_options
from bert_trainer.optim import WarmupPolyDecay
from bert_trainer.tasks.pretrain.driver import engine_options as pretrain_options

LR, WD, B1, B2, EPS, STEPS = 0.05, 0.3, 0.9, 0.999, 1e-6, 4
NAMES = ("dense/kernel", "dense/bias")  # the bias is excluded from weight decay


class Linear(tf.Module):
    """y = x @ kernel + bias: small enough that its gradient is written out in numpy below."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.kernel = tf.Variable(rng.normal(size=(5, 3)).astype(np.float32))
        self.bias = tf.Variable(rng.normal(size=(3,)).astype(np.float32))

    def named_variables(self) -> dict[str, tf.Variable]:
        return dict(zip(NAMES, (self.kernel, self.bias)))


def squared_error(model, features, training, compute_dtype):
    residual = features["x"] @ model.kernel + model.bias - features["y"]
    return {"loss": tf.reduce_mean(tf.reduce_sum(residual * residual, axis=1))}


def batches() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(8, 5)).astype(np.float32), "y": rng.normal(size=(8, 3)).astype(np.float32)}
            for _ in range(STEPS)]


def reference(bias_correction: bool) -> list[dict[str, np.ndarray]]:
    """The weights after each step, in float64: Google's AdamWeightDecay (decay from the pre-update weight, none for
    the bias), with m_hat = m/(1-b1^t), v_hat = v/(1-b2^t) in place of m, v when `bias_correction`."""
    model = Linear()
    w = {name: var.numpy().astype(np.float64) for name, var in model.named_variables().items()}
    m = {name: np.zeros_like(value) for name, value in w.items()}
    v = {name: np.zeros_like(value) for name, value in w.items()}
    schedule = WarmupPolyDecay(LR, 1000, 0)
    out = []
    for t, batch in enumerate(batches(), start=1):
        x, y = batch["x"].astype(np.float64), batch["y"].astype(np.float64)
        residual = x @ w["dense/kernel"] + w["dense/bias"] - y
        grads = {"dense/kernel": 2 * x.T @ residual / len(x), "dense/bias": 2 * residual.sum(0) / len(x)}
        lr = float(schedule(t - 1))  # the engine's schedule takes step - 1
        for name, g in grads.items():
            m[name] = B1 * m[name] + (1 - B1) * g
            v[name] = B2 * v[name] + (1 - B2) * g * g
            m_hat, v_hat = (m[name] / (1 - B1 ** t), v[name] / (1 - B2 ** t)) if bias_correction else (m[name], v[name])
            update = m_hat / (np.sqrt(v_hat) + EPS) + (WD * w[name] if name == "dense/kernel" else 0.0)
            w[name] = w[name] - lr * update
        out.append(dict(w))
    return out


def engine(bias_correction: bool, use_xla: bool) -> TrainEngine:
    opts = EngineOptions(learning_rate=LR, num_train_steps=1000, num_warmup_steps=0, optimizer="adam",
                         weight_decay_rate=WD, beta_1=B1, beta_2=B2, epsilon=EPS, clip_norm=0.0, use_xla=use_xla,
                         adam_bias_correction=bias_correction)
    return TrainEngine(Linear(), squared_error, opts)


def test_googles_update_without_bias_correction_is_the_default():
    assert EngineOptions().adam_bias_correction is False
    assert engine(False, False).optimizer.bias_correction is False


@pytest.mark.parametrize("use_xla", [False, True], ids=["plain", "xla"])
@pytest.mark.parametrize("bias_correction", [False, True], ids=["google", "corrected"])
def test_each_step_is_the_written_out_update(bias_correction: bool, use_xla: bool):
    trained = engine(bias_correction, use_xla)
    expected = reference(bias_correction)
    for t, batch in enumerate(batches()):
        trained.train_step([{key: tf.constant(value) for key, value in batch.items()}])
        for name, var in trained.model.named_variables().items():
            # The fused kernel takes 1 - beta_2 in fp32 (0.00099999), the write-out in fp64: 1e-5 apart at most.
            np.testing.assert_allclose(var.numpy(), expected[t][name], rtol=0, atol=2e-5, err_msg=f"{name} step {t + 1}")


def test_the_two_settings_differ_most_on_the_first_step():
    """Step one: corrected, m_hat/sqrt(v_hat) = g/|g|, so every weight moves by ~lr (plus decay); Google's moves by
    lr * 0.1/sqrt(0.001) ~ 3.16 lr. The written-out references say the same (a check on the test)."""
    first = {setting: reference(setting)[0]["dense/bias"] for setting in (False, True)}
    start = Linear().bias.numpy()
    np.testing.assert_allclose(np.abs(first[True] - start), LR, rtol=1e-3)
    np.testing.assert_allclose(np.abs(first[False] - start), LR * 0.1 / np.sqrt(0.001), rtol=1e-3)


#: The fewest flags each task parses with (parsing checks no file; validation, not run here, does).
COMMANDS = {"pretrain": ["pretrain", "--input_files_dir", "in", "--output_dir", "out", "--bert_model", "base"],
            "glue": ["glue", "--task_name", "MRPC", "--data_dir", "in", "--vocab_file", "vocab.txt", "--bert_model",
                     "base", "--output_dir", "out"],
            "squad": ["squad", "--vocab_file", "vocab.txt", "--bert_model", "base", "--output_dir", "out"]}


@pytest.mark.parametrize(("flags", "expected"), [([], False), (["--adam_bias_correction"], True),
                                                  (["--noadam_bias_correction"], False)])
@pytest.mark.parametrize("task", list(COMMANDS))
def test_the_flag_reaches_the_engine_options_of_every_task(task: str, flags: list[str], expected: bool):
    args = build_parser().parse_args(COMMANDS[task] + flags)
    opts = pretrain_options(args) if task == "pretrain" else finetune_options(args, 10)
    assert opts.adam_bias_correction is expected


def test_both_spellings_at_once_exit_2_naming_them(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(COMMANDS["glue"] + ["--adam_bias_correction", "--noadam_bias_correction"])
    assert exit_.value.code == 2 and "--noadam_bias_correction" in capsys.readouterr().err
