"""The table `bertjob run --local` ends with (local/summary.py), and `-o yaml` / `-o json`: the figures each task's
results hold, a report that is hostile or mistyped, and no control character reaching the terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bert_operator.local.runner import LocalRun, status_json, status_yaml
from bert_operator.local.summary import metric, summary_table
from tests.local.helpers import summary_rows

HOSTILE = "\x1b]0;owned\x07\x1b[2J\r\x9b31m\u202e"
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
OUT = "/runs/volumes/bert-tiny"


def status(task: str, results: Any, phase: str = "Succeeded", **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "task": task, "startTime": "2026-01-01T10:00:00Z", "completionTime": "2026-01-01T10:01:05Z",
            "results": results, **extra}


#: What each task's results.json holds (as the trainer writes it), and the figure the table shows for it.
@pytest.mark.parametrize("task, results, shown", [
    ("pretrain", {"finalLoss": 4.98123, "mlmAccuracy": 0.1, "evalLoss": float("nan"), "evalMlmAccuracy": 0.1234,
                  "stage": "phase2"}, "loss 4.981, eval MLM acc 0.123"),
    ("pretrain", {"finalLoss": 6.5, "mlmAccuracy": 0.05}, "loss 6.500, MLM acc 0.050"),
    ("squad", {"task": "squad-v1.1", "predict": {"exact_match": 81.2, "f1": 88.456}}, "F1 88.46, EM 81.20"),
    ("squad", {"task": "squad-v2.0", "predict": {"exact": 70.0, "f1": 73.1, "HasAns_f1": 80.0}}, "F1 73.10, EM 70.00"),
    ("glue", {"task": "CoLA", "dev": {"mcc": 0.41234}, "exported": []}, "CoLA dev MCC 0.412"),
    ("glue", {"task": "MRPC", "dev": {"accuracy": 0.843, "f1": 0.889}}, "MRPC dev acc 0.843 F1 0.889"),
    ("glue", {"task": "MNLI", "dev_matched": {"accuracy": 0.84}, "dev_mismatched": {"accuracy": 0.83}},
     "MNLI dev_matched acc 0.840, dev_mismatched acc 0.830"),
    ("prepareData", {"shards": 8, "instances": 14530, "documents": 480}, "14530 instances, 8 shards"),
    ("glue", None, ""), ("unknown", {"f1": 1.0}, ""),
])
def test_the_main_metric_of_each_task(task: str, results: Any, shown: str) -> None:
    assert metric(status(task, results)) == shown


def test_the_table_has_phase_reason_duration_metric_outputs_and_exports() -> None:
    failed = status("glue", None, "Failed", conditions=[
        {"type": "Failed", "status": "True", "reason": "DependencyFailed", "message": "tiny-pretrain failed"}])
    del failed["startTime"]
    runs = [LocalRun("tiny-pretrain", "Succeeded", status("pretrain", {"finalLoss": 4.2}), f"{OUT}/pretrain",
                     exports=[f"{OUT}/pretrain/phase1/export/hf", f"{OUT}/pretrain/phase2/export/hf"]),
            LocalRun("tiny-cola", "Failed", failed, f"{OUT}/cola")]
    rows = summary_rows(summary_table(runs))
    assert list(rows) == ["tiny-pretrain", "tiny-cola"]
    assert rows["tiny-pretrain"] == {"NAME": "tiny-pretrain", "PHASE": "Succeeded", "REASON": "", "DURATION": "65s",
                                     "METRIC": "loss 4.200", "OUTPUTS": f"{OUT}/pretrain",
                                     "EXPORTS": "phase1/export/hf, phase2/export/hf"}
    assert (rows["tiny-cola"]["PHASE"], rows["tiny-cola"]["REASON"], rows["tiny-cola"]["DURATION"]) == (
        "Failed", "DependencyFailed", "")


MISTYPED = [5, "text", HOSTILE, [1, HOSTILE], {"k": HOSTILE}, True, 10 ** 30, float("nan"), float("inf"), None]


@pytest.mark.parametrize("field", ["status", "results", "results.finalLoss", "results.predict", "results.predict.f1",
                                   "results.dev", "results.dev.mcc", "results.task", "results.instances",
                                   "task", "startTime", "completionTime", "conditions", "conditions.0",
                                   "conditions.0.reason"])
def test_a_hostile_or_mistyped_report_cannot_break_the_table_or_reach_the_terminal(field: str) -> None:
    for bad in MISTYPED:
        for task in ("pretrain", "squad", "glue", "prepareData"):
            document = {"status": status(task, {"finalLoss": 1.0, "predict": {"f1": 1.0}, "dev": {"mcc": 0.5},
                                                "task": "CoLA", "instances": 3},
                                         conditions=[{"type": "Failed", "status": "True", "reason": "X"}])}
            parent: Any = document
            keys = ["status", *field.split(".")] if field != "status" else ["status"]
            for key in keys[:-1]:
                parent = parent[int(key)] if key.isdigit() else parent[key]
            parent[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = bad
            run = LocalRun(f"job-{task}", "Failed", document["status"], f"{OUT}/{HOSTILE}",
                           exports=[f"{OUT}/{HOSTILE}/x", HOSTILE])
            printed = summary_table([run])
            assert CONTROLS.search(printed) is None, printed
            assert "\\x1b]0;owned\\x07" in printed  # the outputs' folder: still there to read, escaped
            if isinstance(document["status"], dict):
                for dump, load in ((status_yaml([run]), lambda text: next(yaml.safe_load_all(text))),
                                   (status_json([run]), lambda text: json.loads(text)[0])):
                    assert CONTROLS.search(dump) is None, dump
                    assert load(dump)["name"] == f"job-{task}"


@pytest.mark.parametrize("interactive", [False, True])
def test_events_and_progress_lines_of_a_run_are_escaped(interactive: bool) -> None:
    import io

    from bert_operator.local.display import Display

    stream = io.StringIO()
    display = Display(stream=stream, interactive=interactive)
    display.start("job-1")
    display.post({"metadata": {"name": "job-1"}}, "Warning", "Failed",
                 f"launcher exited with code 1: ValueError: {HOSTILE}\nfake: Succeeded (log x.log)")
    display.progress({"progress": {"stage": HOSTILE, "step": 5, "totalSteps": 10, "percent": 50, "loss": 10 ** 400,
                                   "etaSeconds": float("inf")}})
    display.close()
    printed = stream.getvalue().replace("\r", "")  # the bar's own carriage returns (interactive only)
    assert CONTROLS.search(printed) is None, printed
    assert "ValueError: \\x1b]0;owned\\x07\\x1b[2J\\r\\x9b31m\\u202e\\nfake: Succeeded" in printed
    assert "\\x1b]0;owned\\x07\\x1b[2J\\r\\x9b31m\\u202e 5/10" in printed


def test_bertjobs_own_error_lines_are_escaped(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from bert_operator import cli

    missing = tmp_path / f"jobs{HOSTILE}.yaml"
    assert cli.main(["run", "--local", str(missing)]) == 2
    err = capsys.readouterr().err
    assert CONTROLS.search(err) is None and err.endswith("jobs\\x1b]0;owned\\x07\\x1b[2J\\r\\x9b31m\\u202e.yaml: no such file\n")


def test_a_hostile_report_file_is_skipped_not_a_traceback(tmp_path) -> None:
    """Local mode reads the stage's progress.json and results.json as the endpoint reads a report: bounded in size
    and nesting (a results.json nested 100,000 deep made json.loads raise RecursionError, which ended the run with a
    traceback), and a readable report after it is still folded in."""
    from bert_operator.api.parse import parse_job
    from bert_operator.local.runner import ReportReader
    from bert_operator.local.volumes import volume_map
    from tests.local.helpers import job_yaml, tiny_prepare_spec

    job = parse_job(job_yaml("hostile", tiny_prepare_spec()))
    volumes = volume_map(job, None, {"work": tmp_path / "work", "inputs": tmp_path / "inputs"}, tmp_path, tmp_path)
    reader = ReportReader(job, volumes)
    stage = next(iter(reader.locations))
    folder = Path(reader.locations[stage])
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "progress.json").write_text(json.dumps({"step": 1, "pad": "x" * 200_000}))
    assert reader.fold({}, stage) is None
    (folder / "progress.json").write_text(json.dumps({"step": 3, "totalSteps": 9}))
    patch = reader.fold({}, stage)
    assert patch is not None and patch["progress"]["step"] == 3
