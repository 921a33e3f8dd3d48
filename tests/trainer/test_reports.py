"""The one writer of progress.json and results.json: the contract's fields only, rank 0 only, no TensorFlow."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from bert_common.contract import PROGRESS_FIELD_NAMES
from bert_trainer.reports import ReportWriter


def test_progress_holds_the_contract_fields_in_order_stamped(tmp_path, caplog):
    caplog.set_level("INFO")
    body = ReportWriter(str(tmp_path), chief=True).progress({"etaSeconds": 3.0, "step": 2, "totalSteps": 4})
    written = json.loads((tmp_path / "progress.json").read_text())
    assert written == body and list(written) == ["step", "totalSteps", "etaSeconds", "updatedAt"]
    assert list(written) == [name for name in PROGRESS_FIELD_NAMES if name in written]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", written["updatedAt"])
    assert f"event=progress step=2 totalSteps=4 etaSeconds=3.0 updatedAt={written['updatedAt']}" in caplog.text


def test_a_field_outside_the_contract_is_refused(tmp_path):
    with pytest.raises(ValueError, match="shardsDone"):
        ReportWriter(str(tmp_path), chief=True).progress({"step": 1, "totalSteps": 2, "shardsDone": 1})
    assert not (tmp_path / "progress.json").exists()


def test_results_are_stamped_and_logged(tmp_path, caplog):
    caplog.set_level("INFO")
    body = ReportWriter(str(tmp_path), chief=True).results({"steps": 3})
    assert json.loads((tmp_path / "results.json").read_text()) == body and body["steps"] == 3 and body["updatedAt"]
    assert "event=results " in caplog.text


def test_other_ranks_write_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTJOB_PROGRESS_URL", "http://127.0.0.1:9/progress/ns/job")
    monkeypatch.setenv("BERTJOB_STAGE", "phase1")
    monkeypatch.setenv("BERTJOB_TOKEN_FILE", str(tmp_path / "token"))
    writer = ReportWriter(str(tmp_path / "out"), chief=False)
    assert writer.pusher is None
    assert writer.progress({"step": 1, "totalSteps": 2}, final=True) is None
    assert writer.results({"steps": 2}) == {"steps": 2}
    assert not (tmp_path / "out").exists()


def test_importing_it_imports_no_tensorflow():
    code = "import sys, bert_trainer.reports; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reports_are_strict_json_with_nan_as_null(tmp_path, monkeypatch):
    """An evaluation of 0 batches is NaN: the files and the body pushed to the operator carry null, which every JSON
    reader (the API server's included) takes; Python's default would write a bare NaN."""
    import urllib.request

    sent = []

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda request, **_: sent.append(request.data) or Answer())
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("BERTJOB_PROGRESS_URL", "http://127.0.0.1:9/progress/ns/job")
    monkeypatch.setenv("BERTJOB_STAGE", "phase1")
    monkeypatch.setenv("BERTJOB_TOKEN_FILE", str(tmp_path / "token"))
    writer = ReportWriter(str(tmp_path / "out"), chief=True)
    writer.progress({"step": 1, "totalSteps": 2, "loss": float("nan")}, final=True)
    writer.results({"evalLoss": float("nan"), "eval": {"batches": 0, "loss": float("-inf")}})

    def strict(data):
        return json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} in a report"))

    assert strict((tmp_path / "out" / "progress.json").read_bytes())["loss"] is None
    assert strict((tmp_path / "out" / "results.json").read_bytes())["eval"] == {"batches": 0, "loss": None}
    assert [strict(body)["stage"] for body in sent] == ["phase1", "phase1"]
    assert strict(sent[1])["results"]["evalLoss"] is None
