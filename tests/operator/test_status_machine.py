"""The phase machine and progress arithmetic as pure functions."""

from __future__ import annotations

import datetime

import pytest
import yaml

from bert_operator import status as sm
from bert_operator.api.parse import parse_job
from bert_operator.progress import staleness_patch
from bert_operator.reports import merge_report
from tests.conftest import REPO

NOW = "2026-11-26T12:00:00Z"


def mpijob(*true: str, false: tuple[str, ...] = ()) -> dict:
    conditions = [{"type": t, "status": "True", "reason": f"MPIJob{t}", "message": t} for t in true]
    conditions += [{"type": t, "status": "False"} for t in false]
    return {"metadata": {"name": "x"}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(("conditions", "phase"), [
    ((), "Pending"),
    (("Created",), "Created"),
    (("Created", "Running"), "Running"),
    (("Created", "Running", "Restarting"), "Restarting"),
    (("Created", "Suspended"), "Suspended"),
    (("Created", "Running", "Succeeded"), "Succeeded"),
    (("Created", "Running", "Failed"), "Failed"),
])
def test_stage_phase_from_mpijob_conditions(conditions: tuple[str, ...], phase: str) -> None:
    assert sm.stage_phase(mpijob(*conditions)).phase == phase


def test_false_conditions_do_not_count_and_missing_mpijob_is_pending() -> None:
    assert sm.stage_phase(mpijob("Created", false=("Running",))).phase == "Created"
    assert sm.stage_phase(None).reason == "NotCreated"


def test_job_is_succeeded_only_after_its_last_stage() -> None:
    done = sm.StagePhase("Succeeded", "", "")
    pending = sm.StagePhase("Pending", "NotCreated", "")
    assert sm.job_state([done, pending]) == sm.JobState("Pending", 1, "NotCreated", "")
    assert sm.job_state([done, done]).phase == "Succeeded"
    assert sm.job_state([sm.StagePhase("Failed", "X", "boom"), pending]).phase == "Failed"


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    first = sm.set_condition([], "Running", True, "A", "a", "t1", 1)
    again = sm.set_condition(first, "Running", True, "B", "b", "t2", 2)
    assert again[0]["lastTransitionTime"] == "t1" and again[0]["reason"] == "B" and again[0]["observedGeneration"] == 2
    flipped = sm.set_condition(again, "Running", False, "C", "c", "t3", 2)
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "False"


def test_phase_conditions_turn_off_what_no_longer_holds() -> None:
    running = sm.phase_conditions([], sm.JobState("Running", 0, "MPIJobRunning", ""), NOW, 1)
    done = sm.phase_conditions(running, sm.JobState("Succeeded", 0, "MPIJobSucceeded", ""), NOW, 1)
    by_type = {c["type"]: c["status"] for c in done}
    assert by_type == {"Valid": "True", "Created": "True", "Running": "False", "Succeeded": "True", "Ready": "False"}


def test_events_only_on_transitions() -> None:
    assert sm.event_for_transition("Running", "Running", "phase1", "") is None
    assert sm.event_for_transition("Running", "Failed", "phase1", "OOM")[:2] == ("Warning", "Failed")
    assert sm.event_for_transition(None, "Pending", "squad", "")[0] == "Normal"


def tiny_job():
    return parse_job(yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text()))


def test_progress_percent_spans_all_phases() -> None:
    job = tiny_job()  # 100 steps: phase1 90, phase2 10
    half_phase2 = merge_report(job, {}, {"stage": "phase2", "progress": {"step": 5, "totalSteps": 10}}, NOW)
    assert half_phase2["progress"]["percent"] == 95 and half_phase2["progress"]["display"] == "95% phase2"
    assert half_phase2["progress"]["updatedAt"] == NOW
    assert half_phase2["conditions"][0]["type"] == "ProgressAvailable"


@pytest.mark.parametrize(("report", "message"), [
    ({"stage": "phase3", "progress": {"step": 1, "totalSteps": 2}}, "stage: must be one of"),
    ({"stage": "phase1", "progress": {"step": 5, "totalSteps": 2}}, "progress.step/totalSteps"),
    ({"stage": "phase1", "progress": "lots"}, "progress: must be an object"),
    ({"stage": "phase1"}, "report: needs progress or results"),
])
def test_malformed_reports_are_refused_with_the_field(report: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        merge_report(tiny_job(), {}, report, NOW)


def test_stale_or_missing_progress_is_flagged_once() -> None:
    now = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
    running = {"phase": "Running", "startTime": "2026-11-26T11:00:00Z",
               "progress": {"updatedAt": "2026-11-26T11:30:00Z"}}
    patch = staleness_patch(running, now, 600)
    assert patch["conditions"][0]["status"] == "False" and patch["conditions"][0]["reason"] == "Stale"
    assert staleness_patch({**running, **patch}, now, 600) is None  # already flagged
    silent = {"phase": "Running", "startTime": "2026-11-26T11:00:00Z"}
    assert staleness_patch(silent, now, 600)["conditions"][0]["reason"] == "NoReport"
    assert staleness_patch({"phase": "Succeeded"}, now, 600) is None
    fresh = {**running, "progress": {"updatedAt": "2026-11-26T11:59:00Z"}}
    assert staleness_patch(fresh, now, 600) is None
