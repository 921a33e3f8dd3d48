"""Ctrl-C stops a local run cleanly (the trainer checkpoints the step it reached); the next run resumes there."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.local.helpers import INPUTS_ANNOTATION, job_yaml, run_local, start_local, statuses, tiny_prepare_spec, write_jobs
from tests.operator.fakes import condition

pytestmark = pytest.mark.timeout(600)
STEPS = 400


def pretrain_spec() -> dict:
    return {
        "task": {"pretrain": {
            "trainSteps": STEPS, "saveCheckpointsSteps": 1000,  # no periodic checkpoint: only the stop saves one
            "phases": [{"maxSeqLength": 64, "maxPredictionsPerSeq": 10, "stepsFraction": 1.0, "batchSizePerGpu": 16,
                        "learningRate": 5e-3, "warmupSteps": 10, "accumulationSteps": 1,
                        "dataPath": "lower_case_1_seq_len_64_max_pred_10_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5_shard_4_test_split_25/books_wiki_en_corpus"}],
        }},
        "model": {"preset": "custom", "config": {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2, "intermediate_size": 64,
                                                 "max_position_embeddings": 64}},
        "precision": "fp32", "xla": False,
        "resources": {"workers": 1, "gpusPerWorker": 0},
        "dataset": {"uri": "pvc://work/records"},
        "output": {"uri": "pvc://work/pretrain"},
    }


def wait_for_step(progress: Path, at_least: int, process, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if progress.exists():
            try:
                step = json.loads(progress.read_text())["step"]
            except (ValueError, KeyError):
                step = 0
            if step >= at_least:
                return step
        time.sleep(0.2)
    raise AssertionError(f"no progress to step {at_least} in {timeout} s")


def test_ctrl_c_checkpoints_and_the_next_run_resumes(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.yaml", job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION),
                      job_yaml("pretrain", pretrain_spec(), INPUTS_ANNOTATION))
    workdir = tmp_path / "runs"
    output = workdir / "volumes" / "work" / "pretrain" / "phase1"

    process = start_local(str(jobs), "--workdir", str(workdir))
    reached = wait_for_step(output / "progress.json", 30, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopping (the trainer saves a checkpoint first" in stderr
    assert "Traceback" not in stderr
    stopped = statuses(stdout)["pretrain"]
    assert stopped["phase"] == "Failed"
    assert condition(stopped, "Failed")["reason"] == "Interrupted"
    saved = sorted(int(p.stem.split("-")[1]) for p in (output / "checkpoints").glob("ckpt-*.index"))
    assert len(saved) == 1 and reached <= saved[0] < STEPS, saved  # the step reached, not a periodic one

    resumed = run_local(str(jobs), "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "records: already Succeeded" in resumed.stderr
    log = (workdir / "default" / "pretrain" / "pretrain-phase1.log").read_text()
    assert f"event=resumed step={saved[0]}" in log
    final = statuses(resumed.stdout)["pretrain"]
    assert final["phase"] == "Succeeded" and final["results"]["steps"] == STEPS
    assert condition(final, "Failed")["status"] == "False"  # the interruption stays in the history, no longer true


def test_a_second_ctrl_c_kills_at_once_and_says_so(tmp_path: Path) -> None:
    spec = pretrain_spec()
    spec["task"]["pretrain"]["saveCheckpointsSteps"] = 5
    jobs = write_jobs(tmp_path / "jobs.yaml", job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION),
                      job_yaml("pretrain", spec, INPUTS_ANNOTATION))
    workdir = tmp_path / "runs"
    process = start_local(str(jobs), "--workdir", str(workdir))
    wait_for_step(workdir / "volumes" / "work" / "pretrain" / "phase1" / "progress.json", 10, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    failed = condition(statuses(stdout)["pretrain"], "Failed")
    assert failed["reason"] == "Interrupted" and "killed on a second Ctrl-C" in failed["message"]
