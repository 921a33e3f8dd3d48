"""--first_epoch_eval (a sweep's early stop): the glue task scores its dev split after the first epoch and reports
the metrics and how many classes it predicted, in results.json's firstEpoch, before training goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_glue_reports_its_first_epoch_on_dev_and_keeps_it_in_the_final_results(tmp_path) -> None:
    tiny = REPO / "examples" / "tiny"
    config = {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bert_trainer", "glue", "--task_name", "CoLA", "--data_dir",
                           str(tiny / "CoLA"), "--vocab_file", str(tiny / "vocab.txt"), "--do_lower_case",
                           "--bert_config_json", json.dumps(config), "--output_dir", str(out), "--max_seq_length", "32",
                           "--train_batch_size", "64", "--num_train_epochs", "2", "--learning_rate", "3e-4",
                           "--first_epoch_eval", "--export_formats", ""],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    first = results["firstEpoch"]
    assert set(first) == {"mcc", "classes"} and first["classes"] in (1, 2)
    assert "event=first_epoch_eval split=dev" in done.stderr and "mcc" in results["dev"]
    refused = subprocess.run([sys.executable, "-m", "bert_trainer", "glue", "--task_name", "CoLA", "--data_dir",
                              str(tiny / "CoLA"), "--vocab_file", str(tiny / "vocab.txt"), "--output_dir", str(out),
                              "--bert_config_json", json.dumps(config), "--do_train", "--first_epoch_eval"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--first_epoch_eval: scores the dev split during training" in refused.stderr
