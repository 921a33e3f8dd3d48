"""Several ranks on one machine: the launcher's own mpirun line on localhost, Horovod across the processes."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.local.helpers import INPUTS_ANNOTATION, job_yaml, run_local, statuses, tiny_prepare_spec, write_jobs
from tests.local.test_interrupt_resume import pretrain_spec

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(importlib.util.find_spec("horovod") is None or shutil.which("mpirun") is None,
                       reason="needs Horovod and Open MPI's mpirun (bash scripts/bootstrap.sh dev builds both)"),
]


def test_two_ranks_under_mpirun_train_as_one_world(tmp_path: Path) -> None:
    spec = pretrain_spec()
    spec["task"]["pretrain"].update(trainSteps=30, saveCheckpointsSteps=10)
    jobs = write_jobs(tmp_path / "jobs.yaml", job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION),
                      job_yaml("pretrain", spec, INPUTS_ANNOTATION))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "runs"), "--processes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    results = statuses(result.stdout)["pretrain"]["results"]
    assert results["worldSize"] == 2 and results["globalBatchSize"] == 2 * 16 and results["steps"] == 30
    log = (tmp_path / "runs" / "default" / "pretrain" / "pretrain-phase1.log").read_text()
    assert "launcher: mpirun --oversubscribe -np 2" in log and "--allow-run-as-root" not in log
    assert log.count("event=horovod_init rank=") == 2
