"""Fine-tuning stops on SIGTERM with a full-state checkpoint of the step reached, and a rerun resumes from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.tf_state import run_trainer

pytest.importorskip("tensorflow")
TINY = REPO / "examples" / "tiny"
CONFIG = {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 64, "max_position_embeddings": 64}


def glue_args(out: Path) -> list[str]:
    return ["glue", "--task_name", "CoLA", "--data_dir", str(TINY / "CoLA"),
            "--vocab_file", str(TINY / "vocab.txt"), "--do_lower_case", "--bert_config_json", json.dumps(CONFIG),
            "--output_dir", str(out), "--do_train", "--do_eval", "--max_seq_length", "32", "--train_batch_size", "8",
            "--learning_rate", "3e-4", "--num_train_epochs", "3", "--precision", "fp32", "--save_checkpoints_steps", "500"]


def test_sigterm_checkpoints_the_step_reached_and_a_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # A process: SIGTERM is what this test sends (the rerun needs none, so it runs in this one).
    process = subprocess.Popen([sys.executable, "-m", "bert_trainer", *glue_args(out)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not (out / "progress.json").exists():  # written every 20 steps
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "glue: stopped at step" in stderr and "Traceback" not in stderr
    saved = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("ckpt-*.index"))
    total = 750  # ceil(2000 x 3 / 8)
    assert len(saved) == 1 and 20 <= saved[0] < total, saved  # the stop's checkpoint (the period is 500)

    rerun = run_trainer(glue_args(out), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"event=resumed step={saved[0]}" in rerun.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["resumedFromStep"] == saved[0] and results["steps"] == total
    assert results["checkpoint"].endswith(f"checkpoints/ckpt-{total}") and "mcc" in results["dev"]
    assert sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("ckpt-*.index")) == [saved[0], 500, total]


def test_a_checkpoint_period_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    args = glue_args(tmp_path / "out")
    args[args.index("--save_checkpoints_steps") + 1] = "0"
    result = run_trainer(args, cwd=tmp_path)
    assert result.returncode == 2 and "--save_checkpoints_steps must be positive, got 0" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_another_run_holds_is_refused(tmp_path: Path) -> None:
    """Issue 13 E1b: fine-tuning takes the same one-writer lock as pretraining and prepare-data."""
    from bert_trainer import output_lock

    out = tmp_path / "out"
    held = output_lock.acquire(str(out), "another run")
    try:
        result = run_trainer(glue_args(out), cwd=tmp_path)
    finally:
        held.release()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--output_dir" in result.stderr and f"pid {os.getpid()} on" in result.stderr
    assert "Traceback" not in result.stderr and not (out / "checkpoints").exists()


@pytest.mark.parametrize("flag", ["num_accumulation_steps", "report_every_steps"])
def test_the_engine_flags_must_be_positive(tmp_path: Path, flag: str) -> None:
    result = run_trainer(glue_args(tmp_path / "out") + [f"--{flag}", "0"], cwd=tmp_path)
    assert result.returncode == 2 and f"--{flag} must be positive, got 0" in result.stderr


def test_accumulation_makes_fewer_larger_optimizer_steps(tmp_path: Path) -> None:
    """Pretraining's --num_accumulation_steps: 2 micro-batches of 8 per step, so 1 epoch of 2000 is 125 steps."""
    out = tmp_path / "out"
    args = glue_args(out)
    args[args.index("--num_train_epochs") + 1] = "1"
    result = run_trainer(args + ["--num_accumulation_steps", "2", "--report_every_steps", "50"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 125 and results["checkpoint"].endswith("checkpoints/ckpt-125")
    assert json.loads((out / "progress.json").read_text())["step"] == 125
    assert [line.split("step=")[1].split()[0] for line in result.stderr.splitlines()
            if "event=progress" in line] == ["50", "100", "125"]
