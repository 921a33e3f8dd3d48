"""The CLI the operator renders: trains, reports, resumes after a kill, fails clearly."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import TINY, tiny_flags


def test_pretrain_writes_progress_results_checkpoints_and_plot(run_cli, records, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(tiny_flags(records, str(out), steps=20, save=10) + ["--do_eval"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    progress = json.loads((out / "progress.json").read_text())
    assert set(progress) == {"step", "totalSteps", "loss", "mlmAccuracy", "nspAccuracy", "sequencesPerSecond",
                             "etaSeconds", "updatedAt"}
    assert progress["step"] == 20 and progress["totalSteps"] == 20 and progress["sequencesPerSecond"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", progress["updatedAt"])
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 20 and results["checkpoint"] == str(out / "checkpoints" / "ckpt-20")
    assert results["finalLoss"] < 5.5 and 0 <= results["evalMlmAccuracy"] <= 1
    assert (out / "checkpoints" / "ckpt-10.index").is_file() and (out / "checkpoints" / "ckpt-20.index").is_file()
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_killed_run_resumes_at_its_last_checkpoint(run_cli, records, tmp_path):
    out = tmp_path / "out"
    flags = tiny_flags(records, str(out), steps=20, save=5)
    killed = run_cli(flags, env={"BERT_TRAINER_KILL_AFTER_STEP": "12"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, no clean shutdown
    assert (out / "checkpoints" / "ckpt-10.index").is_file()
    assert not (out / "results.json").exists()

    resumed = run_cli(flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "event=resumed step=10" in resumed.stderr
    assert "start_step=10" in resumed.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["resumedFromStep"] == 10 and results["steps"] == 20
    # The loss curve history spans both runs.
    steps = [s for s, _ in json.loads((out / "history.json").read_text())]
    assert steps[0] == 1 and steps[-1] == 20


def test_init_checkpoint_from_previous_run_dir_loads_weights_only(run_cli, records, tmp_path):
    first = tmp_path / "phase1"
    assert run_cli(tiny_flags(records, str(first), steps=10, save=10)).returncode == 0
    second = tmp_path / "phase2"
    proc = run_cli(tiny_flags(records, str(second), steps=5, save=5) + ["--init_checkpoint", str(first)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kind=bert-operator" in proc.stderr and "start_step=0" in proc.stderr


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
])
def test_bad_input_exits_2_naming_the_flag(run_cli, records, tmp_path, mutate, flag):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(mutate(tiny_flags(records, str(tmp_path / "out"), steps=5), empty))
    assert proc.returncode == 2
    assert flag in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # failed before doing anything


def test_config_file_and_presets_are_accepted(run_cli, records, tmp_path):
    cfg = tmp_path / "bert_config.json"
    cfg.write_text(json.dumps(TINY))
    flags = flags_without(tiny_flags(records, str(tmp_path / "out"), steps=2, save=2), "--bert_config_json")
    proc = run_cli(flags + ["--bert_config_file", str(cfg)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "bert_config.json").read_text())["hidden_size"] == 64
    help_ = run_cli(["pretrain", "--help"])
    assert "--bert_model {base,large}" in help_.stdout and "--allreduce_post_accumulation" in help_.stdout
