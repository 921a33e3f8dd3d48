"""`kill -9` of `bertjob run --local` takes its trainer with it (issue 13 E1a).

Stages run in their own session (Ctrl-C reaches only `bertjob`), so before the fix nothing
stopped the trainer when `bertjob` was killed: it trained on alone and a rerun started a second
one on the same output. Linux only: the kernel's parent-death signal does it (local/lifetime.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.local.helpers import INPUTS_ANNOTATION, job_yaml, start_local, tiny_prepare_spec, write_jobs
from tests.local.test_interrupt_resume import pretrain_spec, wait_for_step

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that may never come, in a container, has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def trainer_children(parent: int) -> list[int]:
    """Processes whose parent is `parent` and whose command line runs the trainer."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"bert_trainer" in cmdline:
            found.append(int(entry))
    return found


def test_the_trainer_dies_with_a_killed_bertjob(tmp_path: Path) -> None:
    spec = pretrain_spec()
    spec["task"]["pretrain"]["trainSteps"] = 1_000_000  # still training whenever the test looks
    jobs = write_jobs(tmp_path / "jobs.yaml", job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION),
                      job_yaml("pretrain", spec, INPUTS_ANNOTATION))
    workdir = tmp_path / "runs"
    process = start_local(str(jobs), "--workdir", str(workdir))
    trainers: list[int] = []
    try:
        wait_for_step(workdir / "volumes" / "work" / "pretrain" / "phase1" / "progress.json", 10, process)
        trainers = trainer_children(process.pid)
        assert len(trainers) == 1, trainers
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while alive(trainers[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(trainers[0]), f"trainer {trainers[0]} outlived its killed bertjob"
    finally:
        for pid in trainers:  # an orphan left by a failure above: ours to end, by its pid
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
