"""Running `bertjob run --local` as a user does: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

BERTJOB = str(Path(sys.executable).parent / "bertjob")
TINY = REPO / "examples" / "bertjob-tiny.yaml"
TINY_INPUTS = REPO / "examples" / "tiny"


def run_local(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
              output: str | None = "yaml") -> subprocess.CompletedProcess:
    """`bertjob run --local ARGS`, by default with `-o yaml` (the whole statuses, for `statuses`); output=None: the
    table a user sees."""
    return subprocess.run([BERTJOB, "run", "--local", *args, *(["-o", output] if output else [])], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def start_local(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([BERTJOB, "run", "--local", *args, "-o", "yaml"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def statuses(stdout: str) -> dict[str, dict[str, Any]]:
    """The final statuses `-o yaml` printed, by job name."""
    return {doc["name"]: doc["status"] for doc in yaml.safe_load_all(stdout)}


def saved_statuses(workdir: Path, *names: str, namespace: str = "default") -> dict[str, dict[str, Any]]:
    """The statuses a run kept in WORKDIR/NAMESPACE/NAME/status.json, by job name."""
    return {name: json.loads((workdir / namespace / name / "status.json").read_text()) for name in names}


def summary_rows(stdout: str) -> dict[str, dict[str, str]]:
    """The table `bertjob run --local` ends with, as {NAME: {HEADER: cell}}, cut at the header's column starts."""
    header, *lines = stdout.splitlines()
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = starts[1:] + [None]
    rows = [{name: line[start:end].strip() for name, start, end in zip(names, starts, ends)} for line in lines]
    return {row["NAME"]: row for row in rows}


def job_yaml(name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def write_jobs(path: Path, *jobs: dict[str, Any]) -> Path:
    """The jobs as one file; with a copy of the tiny inputs beside it when a job names them (INPUTS_FOLDER): an
    annotation may only name a folder inside the job file's own folder."""
    if any(INPUTS_FOLDER in job["metadata"]["annotations"].values() for job in jobs) and not (path.parent / INPUTS_FOLDER).exists():
        shutil.copytree(TINY_INPUTS, path.parent / INPUTS_FOLDER)
    path.write_text(yaml.safe_dump_all(list(jobs), sort_keys=False))
    return path


def tiny_prepare_spec(output: str = "pvc://work/records", **task: Any) -> dict[str, Any]:
    """A prepareData spec on the tiny corpus (about 4 s)."""
    return {
        "task": {"prepareData": {"maxSeqLength": 64, "maxPredictionsPerSeq": 10, "shards": 4, "testSplit": 25, **task}},
        "model": {"vocab": "pvc://inputs/vocab.txt"},
        "resources": {"workers": 1, "gpusPerWorker": 0},
        "dataset": {"uri": "pvc://inputs/corpus"},
        "output": {"uri": output},
    }


INPUTS_FOLDER = "tiny"
INPUTS_ANNOTATION = {"local.bertoperator.io/pvc.inputs": INPUTS_FOLDER}
