"""The CLI the operator renders: trains, reports, resumes after a kill, fails clearly."""

from __future__ import annotations

import json
import re

import pytest

from conftest import TINY, tiny_flags


def test_killed_run_resumes_at_its_last_checkpoint_and_reports(run_cli, run_cli_until_killed, records, tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "bert_config.json"
    cfg.write_text(json.dumps(TINY))
    flags = flags_without(tiny_flags(records, str(out), steps=20, save=5), "--bert_config_json")
    flags += ["--bert_config_file", str(cfg)]
    # SIGKILL (no clean shutdown) once ckpt-10 is written, well before ckpt-15.
    killed = run_cli_until_killed(flags, "event=checkpoint_saved step=10 ")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "checkpoints" / "ckpt-15.index").exists()
    assert (out / "checkpoints" / "ckpt-10.index").is_file()
    assert json.loads((out / "progress.json").read_text())["step"] == 10
    assert not (out / "results.json").exists()

    resumed = run_cli(flags + ["--do_eval"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "event=resumed step=10" in resumed.stderr
    assert "start_step=10" in resumed.stderr

    progress = json.loads((out / "progress.json").read_text())
    assert set(progress) == {"step", "totalSteps", "loss", "mlmAccuracy", "nspAccuracy", "sequencesPerSecond",
                             "etaSeconds", "updatedAt"}
    assert progress["step"] == 20 and progress["totalSteps"] == 20 and progress["sequencesPerSecond"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", progress["updatedAt"])
    results = json.loads((out / "results.json").read_text())
    assert results["resumedFromStep"] == 10 and results["steps"] == 20
    assert results["checkpoint"] == str(out / "checkpoints" / "ckpt-20")
    assert results["finalLoss"] < 5.5 and 0 <= results["evalMlmAccuracy"] <= 1
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((out / "bert_config.json").read_text())["hidden_size"] == 64
    # The loss curve history spans both runs.
    steps = [s for s, _ in json.loads((out / "history.json").read_text())]
    assert steps[0] == 1 and steps[-1] == 20


def flags_without(flags: list[str], name: str) -> list[str]:
    i = flags.index(name)
    return flags[:i] + flags[i + 2:]


@pytest.mark.parametrize("mutate,flag", [
    (lambda f, t: f[:f.index("--input_files_dir") + 1] + [str(t / "nope")] + f[f.index("--input_files_dir") + 2:],
     "--input_files_dir"),
    (lambda f, t: flags_without(f, "--bert_config_json") + ["--bert_config_file", str(t / "missing.json")],
     "--bert_config_file"),
    (lambda f, t: flags_without(f, "--bert_config_json") + ["--bert_config_json", '{"hidden_size": 64}'],
     "--bert_config_json"),
    (lambda f, t: f + ["--init_checkpoint", str(t / "no-such-ckpt")], "--init_checkpoint"),
    (lambda f, t: f + ["--do_eval", "--eval_files_dir", str(t)], "--eval_files_dir"),
    (lambda f, t: flags_without(f, "--train_batch_size") + ["--train_batch_size", "0"], "--train_batch_size"),
    (lambda f, t: flags_without(f, "--output_dir") + ["--output_dir", str(t.parent / "file.txt" / "out")],
     "--output_dir"),
])
def test_bad_input_exits_2_naming_the_flag(run_cli, records, tmp_path, mutate, flag):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "file.txt").write_text("not a directory")
    proc = run_cli(mutate(tiny_flags(records, str(tmp_path / "out"), steps=5), empty))
    assert proc.returncode == 2
    assert flag in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # failed before doing anything


def test_help_lists_the_operator_contract_flags(run_cli):
    help_ = run_cli(["pretrain", "--help"])
    for flag in ("--horovod", "--input_files_dir", "--eval_files_dir", "--output_dir", "--bert_model {base,large}",
                 "--bert_config_json", "--bert_config_file", "--num_accumulation_steps", "--optimizer {lamb,adam}",
                 "--precision {fp32,fp16,bf16}", "--use_xla", "--allreduce_post_accumulation", "--init_checkpoint",
                 "--do_train", "--do_eval", "--seed"):
        assert flag in help_.stdout, flag


def test_an_in_process_run_sees_a_fresh_process_and_leaves_this_one_as_it_was(run_cli, records, tmp_path):
    """The harness of every in-process run (tests/tf_state.py): the run gets its own working directory, logging as
    `main` configures it in a new process, and its stop handlers; afterwards all of it is as before the run."""
    import logging
    import os
    import signal

    from tensorflow.python.eager import context

    root = logging.getLogger()
    before = (os.getcwd(), dict(os.environ), root.handlers[:], root.level, signal.getsignal(signal.SIGTERM),
              signal.getsignal(signal.SIGINT))
    done = run_cli(tiny_flags(records, "out", steps=1, save=1), env={"BERT_TRAINER_LOG_LEVEL": "debug"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "results.json").is_file()  # a relative --output_dir lands in the run's cwd
    assert " level=DEBUG logger=bert_trainer." in done.stderr  # main's format, at the level the environment asked
    assert (os.getcwd(), dict(os.environ), root.handlers[:], root.level, signal.getsignal(signal.SIGTERM),
            signal.getsignal(signal.SIGINT)) == before
    assert context.global_seed() is None  # the run seeded TensorFlow; a new process starts unseeded

    failed = run_cli(["pretrain", "--output_dir", "o", "--bert_model", "base", "--train_batch_size", "0"])
    assert failed.returncode == 2 and "--train_batch_size must be positive" in failed.stderr  # SystemExit(2)
