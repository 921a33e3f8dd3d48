"""Fixtures for the trainer tests: a tiny BERT config, tiny generated record sets,
a moto S3 server on loopback, the MiniLM files shipped in a PyPI package, and
a helper that runs the real CLI in a subprocess the test SIGKILLs at a moment it chooses
(``run_cli_until_killed``; ``run_cli`` and ``run_cli_process`` are tests/conftest.py's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

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
def run_cli_until_killed(tmp_path):
    """Run ``python -m bert_trainer ARGS`` and SIGKILL it from outside as soon as its log has a
    line containing `marker`: a crash at a moment the test chooses, with no help from the trainer.

    Returns the process (returncode -9 when the kill landed) with stdout and stderr together as
    ``stderr``; fails the test when the run ends, or `timeout` passes, without the marker.
    """

    def _run(args: list[str], marker: str, env: dict[str, str] | None = None,
             timeout: int = 240) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {}), "TF_CPP_MIN_LOG_LEVEL": "2"}
        process = subprocess.Popen([sys.executable, "-m", "bert_trainer", *args], cwd=tmp_path, env=full_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = threading.Timer(timeout, process.kill)
        deadline.start()
        lines: list[str] = []
        seen = False
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if marker in line:
                    process.send_signal(signal.SIGKILL)
                    seen = True
                    break
            lines.extend(process.stdout)  # what it wrote before the kill landed
            process.wait()
        finally:
            deadline.cancel()
        output = "".join(lines)
        if not seen:
            pytest.fail(f"the run ended (status {process.returncode}) without logging {marker!r}:\n{output[-3000:]}")
        return subprocess.CompletedProcess(process.args, process.returncode, "", output)

    return _run
