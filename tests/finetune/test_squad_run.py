"""SQuAD end to end through the CLI: MiniLM fine-tuned on a generated set writes predictions.json and EM/F1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.finetune.test_squad_data import NAMES, long_squad
from tests.tf_state import run_trainer

pytest.importorskip("tensorflow")


def test_squad_run_writes_predictions_and_scores(tmp_path: Path, minilm_dir: Path) -> None:
    minilm = minilm_dir
    # Dev asks about names never seen in training: only reading the context answers it.
    long_squad(tmp_path / "train-v1.1.json", 48, seed=1, names=NAMES[:3])
    long_squad(tmp_path / "dev-v1.1.json", 16, seed=2, names=NAMES[3:])
    out = tmp_path / "out"
    args = ["squad", "--vocab_file", str(minilm / "vocab.txt"), "--do_lower_case", "--bert_config_file", str(minilm / "config.json"),
            "--init_checkpoint", str(minilm / "model.safetensors"), "--output_dir", str(out),
            "--do_train", "--train_file", str(tmp_path / "train-v1.1.json"),
            "--do_predict", "--predict_file", str(tmp_path / "dev-v1.1.json"),
            "--max_seq_length", "64", "--doc_stride", "32", "--max_query_length", "16", "--train_batch_size", "16",
            "--learning_rate", "1e-4", "--num_train_epochs", "2", "--warmup_proportion", "0.1", "--precision", "fp32"]
    result = run_trainer(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads((out / "predictions.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert len(predictions) == 16
    # Seen here: EM 25-50, F1 75-83 after 31 steps (threads make runs differ); a random span scores near 0.
    assert results["predict"]["f1"] >= 60.0 and results["predict"]["exact_match"] >= 15.0, results
    assert results["predict"]["f1"] >= results["predict"]["exact_match"]
    assert all(isinstance(text, str) and text for text in predictions.values())


def test_squad_bad_file_exits_2_naming_the_record(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text('{"data": [{"paragraphs": [{"context": "Paris.", "qas": '
                                         '[{"id": "x1", "question": "?", "answers": [{"text": "Rome", "answer_start": 0}]}]}]}]}')
    args = ["squad", "--vocab_file", "/nonexistent/vocab.txt", "--bert_model", "base", "--output_dir", str(tmp_path / "o"),
            "--do_train", "--train_file", str(tmp_path / "train.json")]
    result = run_trainer(args, cwd=tmp_path)
    assert result.returncode == 2 and "--vocab_file: /nonexistent/vocab.txt: not found" in result.stderr


def test_squad_refuses_an_output_another_run_holds(tmp_path: Path, minilm_dir: Path) -> None:
    """Issue 13 E1b: SQuAD takes the one-writer lock of every task, before it reads any data."""
    from bert_trainer import output_lock

    long_squad(tmp_path / "train-v1.1.json", 4, seed=1, names=NAMES[:3])
    out = tmp_path / "out"
    args = ["squad", "--vocab_file", str(minilm_dir / "vocab.txt"), "--do_lower_case", "--bert_config_file",
            str(minilm_dir / "config.json"), "--output_dir", str(out), "--do_train", "--train_file",
            str(tmp_path / "train-v1.1.json"), "--max_seq_length", "64", "--doc_stride", "32", "--max_query_length", "16"]
    held = output_lock.acquire(str(out), "another run")
    try:
        result = run_trainer(args, cwd=tmp_path)
    finally:
        held.release()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--output_dir" in result.stderr and f"pid {os.getpid()} on" in result.stderr
    assert "Traceback" not in result.stderr and not (out / "checkpoints").exists()
