"""A SQuAD v2.0 job run locally: the real MiniLM on a claim folder, generated questions on another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bert_operator.api.models import BertConfig
from tests.finetune.test_squad_data import NAMES, long_squad
from tests.local.helpers import job_yaml, run_local, statuses, write_jobs
from tests.operator.fakes import condition

pytestmark = pytest.mark.timeout(600)


def test_squad_v2_runs_locally_and_reports_its_scores(tmp_path: Path, minilm_dir: Path) -> None:
    data = tmp_path / "squad"
    data.mkdir()
    long_squad(data / "train-v2.0.json", 24, seed=1, impossible_every=4, names=NAMES[:3])
    long_squad(data / "dev-v2.0.json", 8, seed=2, impossible_every=4, names=NAMES[3:])
    hf = json.loads((minilm_dir / "config.json").read_text())
    config = {key: hf[key] for key in BertConfig.model_fields if key in hf}
    spec = {
        "task": {"squad": {"version": "2.0", "maxSeqLength": 64, "docStride": 32, "maxQueryLength": 16, "epochs": 1,
                           "batchSizePerGpu": 16, "learningRate": 1e-4}},
        "model": {"preset": "custom", "config": config, "vocab": "pvc://minilm/vocab.txt",
                  "initCheckpoint": "pvc://minilm/model.safetensors"},
        "precision": "fp32", "xla": False,
        "resources": {"workers": 1, "gpusPerWorker": 0},
        "dataset": {"uri": "pvc://squad"},
        "output": {"uri": "pvc://work/minilm-squad"},
    }
    jobs = write_jobs(tmp_path / "squad.yaml", job_yaml("minilm-squad", spec, {"local.bertoperator.io/pvc.squad": "squad"}))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "runs"), "--volume", f"minilm={minilm_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    status = statuses(result.stdout)["minilm-squad"]
    assert status["phase"] == "Succeeded" and condition(status, "ProgressAvailable")["message"] == "trainer reported on squad"
    predict = status["results"]["predict"]
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1"} <= set(predict), predict  # the official v2.0 script's keys
    out = tmp_path / "runs" / "volumes" / "work" / "minilm-squad" / "squad"
    assert len(json.loads((out / "predictions.json").read_text())) == 8
    assert len(json.loads((out / "null_odds.json").read_text())) == 8
    log = (tmp_path / "runs" / "default" / "minilm-squad" / "minilm-squad-squad.log").read_text()
    assert "--version_2_with_negative" in log and "loaded=103" in log  # every MiniLM tensor imported
    # The Triton repository (a squad job's default export) carries the windowing and answer search it ran with.
    serving = json.loads((out / "export" / "triton" / "squad" / "assets" / "serving.json").read_text())
    assert (serving["head"], serving["fields"], serving["max_seq_length"]) == ("span", ["question", "context"], 64)
    assert serving["options"]["doc_stride"] == 32 and serving["options"]["version_2_with_negative"] is True
