"""The reconciler against a recording fake cluster: each sync's API calls, status and Events, per transition.

In the style of the MPI Operator controller's tests (``newFixture`` / expected
actions per sync): a case sets up what the API server holds, runs one
``reconcile`` and asserts the exact calls it made, in order, with the status
and Events that came of them. Every row of the phase machine's state table
(``bert_operator/status.py``) and every decision of ``reconcile/plan.py`` has a
case; the whole module runs in well under a second.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bert_operator.kueue import KueueNotInstalled
from bert_operator.reconcile import Reconciler
from bert_operator.reconcile.ports import NamespaceTerminating
from tests.operator.fakes import GLUE, NOW, PRETRAIN, UID, FakeCluster, condition, job, record, sync
from tests.operator.strict import normalised


@pytest.fixture()
def reconciler(cluster: FakeCluster) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: NOW)


def started(reconciler: Reconciler, cluster: FakeCluster, spec: dict[str, Any], *true: str) -> dict[str, Any]:
    """A job whose first stage was created (and has the given MPIJob conditions); calls so far forgotten."""
    body = job(spec)
    sync(reconciler, body)
    first = next(iter(cluster.mpijobs))
    if true:
        cluster.set_conditions(first, *true)
        sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    return body


# ------------------------------------------------------------------ creation


def test_a_new_job_creates_its_first_stage_and_writes_status_once(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = job(PRETRAIN)
    given = copy.deepcopy(body)
    result = reconciler.reconcile(body)
    assert body == given  # the reconciler writes into no body: its output is what it returns
    assert result is not None and result.written
    written = result.status
    assert cluster.calls == [("create", "mpijobs", "j-phase1"), ("patch", "status", "j")]
    assert written == cluster.status_patches[-1]  # (a first status: the patch has every field)
    assert written["phase"] == "Pending" and written["currentStage"] == "phase1"
    assert written["stages"] == [{"name": "phase1", "mpiJob": "j-phase1", "phase": "Pending", "startTime": NOW}]
    assert written["acceptedSpec"]["task"]["pretrain"]["trainSteps"] == 7820 and written["observedGeneration"] == 1
    assert (written["task"], written["workers"], written["gpus"]) == ("pretrain", 1, 8)
    assert condition(written, "SpecApplied")["status"] == "True" and condition(written, "Valid")["status"] == "True"
    assert cluster.events == [("Normal", "Pending", "phase1: New -> Pending: MPIJob created; the MPI Operator has not "
                                                    "reported on it yet")]
    owner = cluster.mpijobs["j-phase1"]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == UID and owner["controller"] is True


def test_nothing_changed_reads_the_stage_and_writes_nothing(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    assert sync(reconciler, body) is None
    assert cluster.calls == [("get", "mpijobs", "j-glue")] and cluster.events == []


def test_the_mpijob_a_watch_event_carries_is_not_read_again(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE)
    cluster.set_conditions("j-glue", "Created")
    sync(reconciler, body, observed=copy.deepcopy(cluster.mpijobs["j-glue"]))
    # No MPIJob read; it is Created but not running, so the namespace's Warnings are read for why.
    assert cluster.calls == [("list", "events", "ml"), ("patch", "status", "j")] and body["status"]["phase"] == "Created"


def test_the_watch_echo_of_our_own_create_decides_nothing(reconciler: Reconciler, cluster: FakeCluster) -> None:
    """The MPIJob event that follows our create brings the object the create answered, which the plan went on
    with: nothing is read, planned or written. An MPIJob that differs (the MPI Operator's first condition) is
    planned on, once; a job forgotten (deleted) is planned on afresh."""
    body = job(GLUE)
    sync(reconciler, body)
    cluster.calls.clear()
    assert sync(reconciler, body, observed=copy.deepcopy(cluster.mpijobs["j-glue"])) is None
    assert cluster.calls == [] and len(cluster.events) == 1
    cluster.set_conditions("j-glue", "Created")
    assert sync(reconciler, body, observed=copy.deepcopy(cluster.mpijobs["j-glue"]))["phase"] == "Created"
    assert cluster.calls == [("list", "events", "ml"), ("patch", "status", "j")]
    cluster.calls.clear()
    assert sync(reconciler, body, observed=copy.deepcopy(cluster.mpijobs["j-glue"])) is None and cluster.calls == []
    reconciler.forget("ml", "j")
    assert sync(reconciler, body, observed=copy.deepcopy(cluster.mpijobs["j-glue"])) is None
    assert cluster.calls == [("list", "events", "ml")]  # planned on again (and the status already says Created)


# ------------------------------------------------- the state table, row by row


@pytest.mark.parametrize(("conditions", "phase", "event"), [
    ((), "Pending", None),
    (("Created",), "Created", ("Normal", "Created")),
    (("Created", "Running"), "Running", ("Normal", "Running")),
    (("Created", "Running", "Restarting"), "Restarting", ("Warning", "Restarting")),
    (("Created", "Suspended"), "Suspended", ("Normal", "Suspended")),
    (("Created", "Running", "Succeeded"), "Succeeded", ("Normal", "Succeeded")),
    (("Created", "Running", "Failed"), "Failed", ("Warning", "Failed")),
])
def test_each_mpijob_condition_gives_the_job_its_phase(reconciler: Reconciler, cluster: FakeCluster,
                                                       conditions: tuple[str, ...], phase: str,
                                                       event: tuple[str, str] | None) -> None:
    body = started(reconciler, cluster, GLUE)
    cluster.set_conditions("j-glue", *conditions, startTime="2026-12-01T09:59:00Z")
    sync(reconciler, body)
    status = body["status"]
    assert status["phase"] == phase and status["stages"][0]["phase"] == phase
    why = [("list", "events", "ml")] if phase == "Created" else []  # pods may be missing: read why
    why += [("list", "pods", "j/glue")] if phase == "Failed" else []  # the pods say whether to restart it
    if event is None:
        assert cluster.calls == [("get", "mpijobs", "j-glue"), *why] and cluster.events == []
        return
    assert cluster.calls == [("get", "mpijobs", "j-glue"), *why, ("patch", "status", "j")]
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [event]
    assert cluster.events[0][2].startswith(f"glue: Pending -> {phase}: MPIJob {phase.lower()}")
    assert condition(status, phase)["status"] == "True" and condition(status, "Created")["status"] == "True"
    if phase in ("Succeeded", "Failed"):
        assert status["completionTime"] == NOW and status["stages"][0]["completionTime"] == NOW
    else:
        assert "completionTime" not in status


def test_running_then_restarting_then_running_turns_conditions_off_and_on(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    cluster.set_conditions("j-glue", "Created", "Running", "Restarting")
    sync(reconciler, body)
    assert condition(body["status"], "Running")["status"] == "False"
    assert condition(body["status"], "Restarting")["status"] == "True"
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler, body)
    assert condition(body["status"], "Running")["status"] == "True"
    assert condition(body["status"], "Restarting") == {**condition(body["status"], "Restarting"), "status": "False",
                                                       "reason": "NotRestarting"}
    assert [reason for _, reason, _ in cluster.events] == ["Restarting", "Running"]


# ------------------------------------------------------------- chaining stages


def test_a_succeeded_phase_creates_the_next_in_the_same_sync(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, PRETRAIN, "Created", "Running")
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded", completionTime="2026-12-01T09:58:00Z")
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-phase1"), ("create", "mpijobs", "j-phase2"), ("patch", "status", "j")]
    status = body["status"]
    assert [(s["name"], s["phase"]) for s in status["stages"]] == [("phase1", "Succeeded"), ("phase2", "Pending")]
    assert status["stages"][0]["completionTime"] == "2026-12-01T09:58:00Z"
    assert status["currentStage"] == "phase2" and status["phase"] == "Pending" and "completionTime" not in status
    init = cluster.mpijobs["j-phase2"]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert init[init.index("--init_checkpoint") + 1] == "s3://results/bert/phase1"
    assert [m for _, _, m in cluster.events] == ["phase1: Running -> Succeeded: MPIJob succeeded",
                                                 "phase2: New -> Pending: MPIJob created; the MPI Operator has not "
                                                 "reported on it yet"]


def test_a_succeeded_stage_is_never_read_again_and_the_last_one_ends_the_job(reconciler: Reconciler,
                                                                             cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, PRETRAIN, "Created", "Running", "Succeeded")
    record(reconciler, body, {"progress": {"stage": "phase2", "step": 700, "totalSteps": 782, "percent": 99,
                                           "display": "99% phase2"}})
    cluster.calls.clear()
    cluster.set_conditions("j-phase2", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-phase2"), ("patch", "status", "j")]
    status = body["status"]
    assert status["phase"] == "Succeeded" and status["completionTime"] == NOW
    assert status["progress"]["percent"] == 100 and status["progress"]["display"] == "100%"
    cluster.calls.clear()
    assert sync(reconciler, body) is None and cluster.calls == []  # finished, same generation: not even a read


def test_a_recorded_mpijob_deleted_behind_our_back_is_created_again(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    del cluster.mpijobs["j-glue"]
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    assert body["status"]["phase"] == "Pending"


# ----------------------------------------------------------- adopting on 409


def test_an_mpijob_of_ours_that_exists_is_adopted_not_duplicated(reconciler: Reconciler, cluster: FakeCluster) -> None:
    first = job(GLUE)
    sync(reconciler, copy.deepcopy(first))  # then the operator died before its status write landed:
    restarted = Reconciler(api=cluster, events=cluster, clock=lambda: NOW)  # the next one starts from no status
    cluster.set_conditions("j-glue", "Created", "Running", startTime="2026-12-01T09:00:00Z")
    cluster.calls.clear()
    cluster.events.clear()
    sync(restarted, first)
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")] and len(cluster.mpijobs) == 1
    assert first["status"]["phase"] == "Running" and first["status"]["stages"][0]["startTime"] == "2026-12-01T09:00:00Z"


def test_a_foreign_mpijob_with_our_name_fails_the_job_and_is_left_alone(reconciler: Reconciler, cluster: FakeCluster) -> None:
    cluster.mpijobs["j-glue"] = {"metadata": {"name": "j-glue", "namespace": "ml",
                                              "ownerReferences": [{"uid": "someone-else"}]},
                                 "spec": {"runPolicy": {"suspend": True}}}
    body = job(GLUE)
    sync(reconciler, body)
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")]  # no suspend patch of theirs
    assert body["status"]["phase"] == "Failed" and condition(body["status"], "Failed")["reason"] == "MPIJobNameConflict"
    assert cluster.events == [("Warning", "Failed", "glue: New -> Failed: MPIJob j-glue exists and is not owned by this "
                                                    "BertTrainingJob")]


# ------------------------------------------------------------- invalid specs


def test_an_invalid_job_fails_with_every_field_error_and_creates_nothing(reconciler: Reconciler, cluster: FakeCluster) -> None:
    bad = copy.deepcopy(GLUE)
    bad["model"].pop("vocab")
    bad["resources"] = {"gpusPerWorker": -1}
    body = job(bad)
    sync(reconciler, body)
    assert cluster.calls == [("patch", "status", "j")] and cluster.mpijobs == {}
    status = body["status"]
    assert status["phase"] == "Failed" and status["completionTime"] == NOW
    valid = condition(status, "Valid")
    assert valid["status"] == "False" and valid["reason"] == "InvalidSpec"
    assert "spec.resources.gpusPerWorker" in valid["message"]
    [(kind, reason, message)] = cluster.events
    assert (kind, reason) == ("Warning", "InvalidSpec") and message == valid["message"]
    cluster.calls.clear()
    assert sync(reconciler, body) is None and cluster.calls == []


def test_fixing_an_invalid_job_starts_it(reconciler: Reconciler, cluster: FakeCluster) -> None:
    bad = copy.deepcopy(GLUE)
    bad["model"].pop("vocab")
    body = job(bad)
    sync(reconciler, body)
    body["spec"], body["metadata"]["generation"] = copy.deepcopy(GLUE), 2
    cluster.calls.clear()
    sync(reconciler, body)
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    assert condition(body["status"], "Valid")["status"] == "True" and body["status"]["observedGeneration"] == 2


# ------------------------------------------------------ updates after start


def edited(body: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`body` after a user's edit: spec changed, generation bumped (as the API server does)."""
    spec = copy.deepcopy(body["spec"])
    for key, value in change.items():
        spec[key] = {**spec.get(key, {}), **value}
    return {**body, "spec": spec, "metadata": {**body["metadata"], "generation": body["metadata"]["generation"] + 1}}


def test_changing_a_frozen_field_is_refused_once_and_the_accepted_spec_keeps_running(reconciler: Reconciler,
                                                                                   cluster: FakeCluster) -> None:
    body = edited(started(reconciler, cluster, GLUE, "Created", "Running"), {"resources": {"workers": 4}})
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "status", "j")]
    applied = condition(body["status"], "SpecApplied")
    assert (applied["status"], applied["reason"]) == ("False", "ImmutableFieldChanged")
    assert body["status"]["workers"] == 1 and body["status"]["phase"] == "Running"
    assert body["status"]["acceptedSpec"]["resources"]["workers"] == 1
    assert cluster.events == [("Warning", "ImmutableFieldChanged", "update not applied: fields other than "
                                                                   "runPolicy.suspend cannot change after the job started")]
    cluster.events.clear()
    cluster.set_conditions("j-glue", "Created", "Running", "Restarting")
    sync(reconciler, body)
    assert [reason for _, reason, _ in cluster.events] == ["Restarting"]  # the refusal is said once
    assert condition(body["status"], "SpecApplied")["reason"] == "ImmutableFieldChanged"


def test_an_invalid_update_of_a_running_job_is_refused_not_failed(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = edited(started(reconciler, cluster, GLUE, "Created", "Running"), {"resources": {"gpusPerWorker": -1}})
    sync(reconciler, body)
    applied = condition(body["status"], "SpecApplied")
    assert applied["status"] == "False" and applied["message"].startswith("spec is invalid: ")
    assert "spec.resources.gpusPerWorker" in applied["message"] and body["status"]["phase"] == "Running"
    assert [reason for _, reason, _ in cluster.events] == ["ImmutableFieldChanged"]


def test_a_suspend_toggle_is_passed_to_the_running_stage(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = edited(started(reconciler, cluster, GLUE, "Created", "Running"), {"runPolicy": {"suspend": True}})
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "mpijobs", "j-glue"), ("patch", "status", "j")]
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True
    assert condition(body["status"], "SpecApplied")["status"] == "True" and body["status"]["observedGeneration"] == 2
    cluster.set_conditions("j-glue", "Created", "Suspended")
    cluster.calls.clear()
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "status", "j")]  # toggled once
    assert body["status"]["phase"] == "Suspended"


def test_a_suspend_toggle_still_passes_while_another_change_is_refused(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = edited(started(reconciler, cluster, GLUE, "Created", "Running"),
                  {"runPolicy": {"suspend": True}, "resources": {"workers": 4}})
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "mpijobs", "j-glue"), ("patch", "status", "j")]
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True
    assert condition(body["status"], "SpecApplied")["reason"] == "ImmutableFieldChanged"


def test_a_finished_stage_gets_no_suspend_patch(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running", "Failed")
    body = edited(body, {"runPolicy": {"suspend": True}})
    sync(reconciler, body)
    assert ("patch", "mpijobs", "j-glue") not in cluster.calls and body["status"]["observedGeneration"] == 2


# ------------------------------------------------------------------ writing


def test_no_event_is_posted_for_a_job_deleted_before_its_status_was_written(reconciler: Reconciler,
                                                                           cluster: FakeCluster) -> None:
    cluster.job_exists = False
    assert sync(reconciler, job(GLUE)) is None
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")] and cluster.events == []


def test_a_failing_events_api_never_fails_a_reconcile(reconciler: Reconciler, cluster: FakeCluster) -> None:
    cluster.fail_events = True
    body = job(GLUE)
    assert sync(reconciler, body)["phase"] == "Pending" and cluster.events == []


def test_a_status_write_sends_only_the_fields_that_changed(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE)
    cluster.status_patches.clear()
    cluster.set_conditions("j-glue", "Created")
    sync(reconciler, body)
    assert sorted(cluster.status_patches[0]) == ["conditions", "phase", "stages"]


def test_fields_the_plan_does_not_know_and_nulls_survive_a_plan(reconciler: Reconciler, cluster: FakeCluster) -> None:
    """The plan reads the old status through typed views, never through the models (which would drop an unknown
    field and turn a null into an absent one or a default): what it does not decide is written back as it was."""
    body = started(reconciler, cluster, GLUE, "Created")
    body["status"] = {**body["status"], "fromANewerOperator": {"kept": [1, 2]}, "progress": None, "policy": None}
    reconciler.writer.forget("ml", "j")  # a new operator process reads the status from the API server
    cluster.set_conditions("j-glue", "Created", "Running")
    written = sync(reconciler, body)
    assert written is not None and written["phase"] == "Running"
    assert written["fromANewerOperator"] == {"kept": [1, 2]} and "progress" in written and written["progress"] is None
    assert "policy" not in written and cluster.status_patches[-1]["policy"] is None  # (no policy: dropped, as before)


def test_a_status_field_of_the_wrong_kind_reads_as_missing() -> None:
    """The views' promise: a hand-edited status (the CRD's schema refuses most of these; a status written before a
    schema change may not) never makes the plan fail on a field's kind."""
    from bert_operator.reconcile.status_view import StageView, StatusView

    view = StatusView({"acceptedSpec": "x", "phase": 3, "currentStage": ["a"], "conditions": "c", "stages": [None, {"name": "s"}],
                       "resolved": "r", "dependencies": {"a": 1}, "results": 5})
    assert (view.accepted_spec, view.started, view.phase, view.current_stage) == (None, False, None, None)
    assert (view.conditions, view.stages, view.resolved, view.recorded_output) == ([], [{"name": "s"}], None, None)
    assert (view.dependencies, view.results) == ([], {})
    stage = StageView({"phase": 1, "restarts": "2", "restartedMpiJobUid": 7, "completionTime": {}})
    assert (stage.phase, stage.restarts, stage.restarted_mpijob_uid, stage.completion_time) == (None, 0, None, None)
    assert StageView({"restarts": 2}).restarts == 2 and StageView({"restarts": True}).restarts == 0


def test_reports_go_through_the_same_writer(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    assert record(reconciler, body, {"progress": {"step": 1}}) is not None
    assert record(reconciler, body, {"progress": {"step": 1}}) is None  # unchanged: not written again
    assert cluster.calls == [("patch", "status", "j")] and body["status"]["progress"] == {"step": 1}
    assert body["status"]["phase"] == "Running"


# ------------------------------------------------ what a real API server does


def test_a_spec_read_back_with_normalised_numbers_is_not_a_change(reconciler: Reconciler, cluster: FakeCluster) -> None:
    spec = {**GLUE, "task": {"glue": {"epochs": 2.0, "learningRate": 2e-5}}}
    body = job(spec)
    sync(reconciler, body)
    assert body["status"]["acceptedSpec"]["task"]["glue"]["epochs"] == 2.0
    body = {**body, "spec": normalised(body["spec"]), "status": normalised(body["status"])}  # the next read
    cluster.set_conditions("j-glue", "Created")
    cluster.events.clear()
    sync(reconciler, body)
    assert condition(body["status"], "SpecApplied")["status"] == "True"
    assert [reason for _, reason, _ in cluster.events] == ["Created"]


def test_a_corrected_invalid_job_gets_its_own_start_and_completion_times(cluster: FakeCluster) -> None:
    times = iter(["2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z"])
    reconciler = Reconciler(api=cluster, events=cluster, clock=lambda: next(times))
    bad = copy.deepcopy(GLUE)
    bad["model"].pop("vocab")
    body = job(bad)
    sync(reconciler, body)
    assert body["status"]["completionTime"] == "2026-12-01T10:00:00Z"
    body["spec"], body["metadata"]["generation"] = copy.deepcopy(GLUE), 2
    sync(reconciler, body)
    assert body["status"]["startTime"] == "2026-12-01T11:00:00Z" and "completionTime" not in body["status"]
    assert cluster.status_patches[-1]["completionTime"] is None  # removed on the server too (merge patch null)
    cluster.set_conditions("j-glue", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    status = body["status"]
    assert status["phase"] == "Succeeded" and status["startTime"] < status["completionTime"] == "2026-12-01T12:00:00Z"


def test_an_mpijob_the_api_server_refuses_fails_the_job_once_without_retrying(reconciler: Reconciler,
                                                                              cluster: FakeCluster) -> None:
    cluster.refuse["j-glue"] = ('MPIJob.kubeflow.org "j-glue" is invalid: metadata.labels: Invalid value: '
                                '"q-very-long": must be no more than 63 characters')
    body = job(GLUE)
    sync(reconciler, body)
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    status = body["status"]
    assert status["phase"] == "Failed" and condition(status, "Failed")["reason"] == "MPIJobRefused"
    assert "must be no more than 63 characters" in condition(status, "Failed")["message"]
    assert "acceptedSpec" not in status  # nothing of it ran: the user may still correct the spec
    [(kind, reason, message)] = cluster.events
    assert (kind, reason) == ("Warning", "Failed") and "the API server refused MPIJob j-glue (422)" in message
    cluster.calls.clear()
    assert sync(reconciler, body) is None and cluster.calls == []  # the resync does not retry it
    del cluster.refuse["j-glue"]
    body["spec"], body["metadata"]["generation"] = {**GLUE, "resources": {"workers": 2}}, 2
    sync(reconciler, body)
    assert body["status"]["phase"] == "Pending" and body["status"]["workers"] == 2


def test_a_queued_event_with_the_status_from_before_our_write_repeats_nothing(reconciler: Reconciler,
                                                                             cluster: FakeCluster) -> None:
    cluster.refuse["j-glue"] = "invalid"
    first = job(GLUE)
    queued = copy.deepcopy(first)  # the same job as a second watch event delivered it, before our write
    sync(reconciler, first)
    cluster.calls.clear()
    assert sync(reconciler, queued) is None
    assert cluster.calls == [] and len(cluster.events) == 1 and queued["status"]["phase"] == "Failed"


def test_an_event_from_before_a_spec_change_we_answered_is_ignored(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    older = copy.deepcopy(body)
    newer = edited(body, {"runPolicy": {"suspend": True}})
    sync(reconciler, newer)
    cluster.calls.clear()
    assert sync(reconciler, older) is None and cluster.calls == []
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True  # not toggled back


def test_a_job_reapplied_before_the_old_mpijob_is_collected_waits_then_proceeds(reconciler: Reconciler,
                                                                               cluster: FakeCluster) -> None:
    cluster.mpijobs["j-glue"] = {"metadata": {"name": "j-glue", "namespace": "ml", "ownerReferences": [
        {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob", "name": "j", "uid": "uid-of-the-deleted-one"}]},
        "spec": {"runPolicy": {"suspend": False}}}
    body = job(GLUE)
    sync(reconciler, body)
    status = body["status"]
    assert status["phase"] == "Pending" and "acceptedSpec" not in status
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WaitingForOldMPIJob")
    assert "uid-of-the-deleted-one" in ready["message"] and "garbage collector" in ready["message"]
    del cluster.mpijobs["j-glue"]  # collected; its DELETED event wakes the job
    cluster.calls.clear()
    sync(reconciler, body)
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    assert cluster.mpijobs["j-glue"]["metadata"]["ownerReferences"][0]["uid"] == UID
    assert condition(body["status"], "Ready")["status"] == "False" and body["status"]["acceptedSpec"]
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler, body)
    assert condition(body["status"], "Ready")["status"] == "True"


def test_a_job_being_deleted_gets_nothing_created(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = job(GLUE)
    body["metadata"]["deletionTimestamp"] = NOW
    assert sync(reconciler, body) is None and cluster.calls == []


def warning(kind: str, name: str, reason: str, message: str, when: str) -> dict[str, Any]:
    return {"type": "Warning", "reason": reason, "message": message, "lastTimestamp": when,
            "involvedObject": {"kind": kind, "name": name, "namespace": "ml"}}


def test_a_stage_whose_pods_wait_says_why_with_the_newest_warning(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created")
    cluster.warnings = [
        warning("MPIJob", "j-glue", "FailedCreatePod", 'pods "j-glue-worker-0" is forbidden: no PriorityClass with name '
                "training-high was found", "2026-12-01T10:00:01Z"),
        warning("Pod", "j-glue-worker-0", "FailedScheduling", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                "2026-12-01T10:00:05Z"),
        warning("Pod", "j-glue2-worker-0", "FailedScheduling", "another job's pod", "2026-12-01T10:09:00Z"),
        warning("Pod", "j-glue-squad-worker-0", "FailedScheduling", "job j-glue's pod", "2026-12-01T10:09:30Z"),
        warning("Pod", "other-worker-0", "FailedScheduling", "not ours", "2026-12-01T10:10:00Z"),
    ]
    sync(reconciler, body)
    ready = condition(body["status"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodsPending") and body["status"]["phase"] == "Created"
    assert ready["message"] == "pod j-glue-worker-0: FailedScheduling: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    cluster.set_conditions("j-glue", "Created", "Running")
    cluster.calls.clear()
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "status", "j")]  # running: no Event reads
    assert condition(body["status"], "Ready")["status"] == "True"


def test_a_job_recreated_under_the_same_name_does_not_inherit_the_old_ones_status(reconciler: Reconciler,
                                                                                  cluster: FakeCluster) -> None:
    """Its DELETED event was missed: the writer's memory of the old job (generation 3) must not hide the new one."""
    old = edited(edited(started(reconciler, cluster, GLUE, "Created", "Running"), {"runPolicy": {"suspend": True}}),
                 {"runPolicy": {"suspend": False}})
    sync(reconciler, old)
    del cluster.mpijobs["j-glue"]
    cluster.calls.clear()
    new = job(GLUE)
    new["metadata"]["uid"] = "uid-of-the-new-job"
    sync(reconciler, new)
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    assert new["status"]["observedGeneration"] == 1


def test_an_accepted_spec_that_no_longer_passes_the_rules_fails_the_job_with_a_status(reconciler: Reconciler,
                                                                                      cluster: FakeCluster) -> None:
    """After an upgrade with stricter rules (a 64-character queueName was accepted once), no traceback: Failed."""
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    body["status"]["acceptedSpec"] = {**body["status"]["acceptedSpec"], "queueName": "q" * 64}
    body["spec"] = {**body["spec"], "queueName": "q" * 64}
    reconciler.writer.forget("ml", "j")  # a new operator process reads the status from the API server
    sync(reconciler, body)
    failed = condition(body["status"], "Failed")
    assert body["status"]["phase"] == "Failed" and failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("the spec this job started with is no longer valid: spec.queueName:")
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Warning", "InvalidSpec")]


def test_unreadable_warning_events_do_not_stop_the_job(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE)
    cluster.warnings = None
    cluster.set_conditions("j-glue", "Created")
    sync(reconciler, body)
    assert ("list", "events", "ml") in cluster.calls and body["status"]["phase"] == "Created"


def test_a_bug_in_a_courtesy_read_is_not_taken_for_an_unreadable_answer(reconciler: Reconciler, cluster: FakeCluster,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ReadFailed (an error answer, or none) is forgiven; a TypeError out of the port is a bug, and surfaces."""
    body = started(reconciler, cluster, GLUE)
    cluster.set_conditions("j-glue", "Created")

    def broken(namespace: str) -> list[dict[str, Any]]:
        raise TypeError("list indices must be integers or slices, not str")

    monkeypatch.setattr(cluster, "list_warning_events", broken)
    with pytest.raises(TypeError, match="list indices"):
        sync(reconciler, body)


# ------------------------------------------- issue 25: what a real API server showed


def test_a_job_with_thousands_of_field_errors_fails_with_a_status_the_api_server_accepts(reconciler: Reconciler,
                                                                                        cluster: FakeCluster) -> None:
    """8,000 reserved pod-label keys (a 250 KB job the schema accepts): every error in two conditions made a 2.9 MB
    status PATCH, which a real API server answers 413. The first errors and a count, bounded in bytes."""
    spec = copy.deepcopy(GLUE)
    spec["resources"] = {"podTemplate": {"labels": {f"bertoperator.io/k{i:05d}": "x" for i in range(8000)}}}
    body = job(spec)
    sync(reconciler, body)
    status = body["status"]
    assert status["phase"] == "Failed" and condition(status, "Failed")["reason"] == "InvalidSpec"
    assert len(json.dumps(cluster.status_patches[-1]).encode()) < 64 * 1024
    message = condition(status, "Valid")["message"]
    assert message.startswith("spec.resources.podTemplate.labels['bertoperator.io/k00000']: ")
    assert message.endswith("(and 7990 more errors)")
    [(_, _, event)] = cluster.events
    assert len(event.encode()) <= 1024


def test_any_condition_message_is_capped_in_bytes_on_a_character_boundary() -> None:
    from bert_operator import status as sm
    [written] = sm.set_condition([], "Failed", True, "X", "é" * 40_000, NOW, 1)
    assert len(written["message"].encode()) <= sm.MAX_MESSAGE_BYTES and written["message"].endswith("...")
    written["message"].encode().decode()  # (no half a character)


@pytest.mark.parametrize("reason", ["InvalidSpec", "PolicyViolation", "DependencyFailed"])
def test_a_job_failed_before_anything_was_created_shows_its_reason_and_columns(reason: str) -> None:
    """`kubectl get btj` reads REASON from the Ready condition and TASK/MODEL/WORKERS/GPUS from the status."""
    from bert_operator.api.errors import FieldError
    from bert_operator.reconcile import plan as planning
    from bert_operator.reconcile.observe import Observed
    from bert_operator.reconcile.recovery import RecoverySettings
    from bert_operator.render import RenderSettings

    spec = copy.deepcopy(GLUE) if reason != "InvalidSpec" else {**copy.deepcopy(GLUE), "resources": {"workers": -1}}
    ctx = planning.Context(job(spec), {}, Observed(), NOW, RenderSettings(), RecoverySettings())
    from bert_operator.api.parse import parse_job
    parsed = parse_job(ctx.body) if reason != "InvalidSpec" else None  # what the callers hold (the spec parses)
    ended = planning._ended(ctx, planning.Ended([FieldError("spec.x", "no")], reason, job=parsed))
    status = ended.status
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", reason, "spec.x: no")
    if reason == "InvalidSpec":
        assert "task" not in status  # nothing to show of a spec that does not parse
    else:
        assert (status["task"], status["model"], status["workers"], status["gpus"]) == ("glue", "base", 1, 8)


def test_an_intermediate_stage_that_succeeded_posts_its_own_event(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, PRETRAIN, "Created", "Running")
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Normal", "Succeeded"), ("Normal", "Pending")]
    assert cluster.events[0][2] == "phase1: Running -> Succeeded: MPIJob succeeded"
    assert cluster.events[1][2].startswith("phase2: New -> Pending")


def test_a_lifecycle_condition_never_names_a_phase_the_job_has_left(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    cluster.set_conditions("j-glue", "Created", "Running", "Restarting")
    sync(reconciler, body)
    cluster.set_conditions("j-glue", "Created")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Created"
    for kind in ("Running", "Restarting"):
        assert condition(body["status"], kind)["status"] == "False"
        assert condition(body["status"], kind)["message"] == "job is Created"


def test_an_accepted_spec_failing_later_leaves_no_lifecycle_condition_true_but_failed(reconciler: Reconciler,
                                                                                      cluster: FakeCluster) -> None:
    body = started(reconciler, cluster, GLUE, "Created", "Running")
    body["status"]["acceptedSpec"] = {**body["status"]["acceptedSpec"], "queueName": "q" * 64}
    body["spec"] = {**body["spec"], "queueName": "q" * 64}
    reconciler.writer.forget("ml", "j")
    sync(reconciler, body)
    true = {c["type"] for c in body["status"]["conditions"] if c["status"] == "True"}
    assert true == {"Failed", "Created", "SpecApplied"} and condition(body["status"], "Ready")["reason"] == "InvalidSpec"


def test_a_restarted_stage_quotes_no_warning_of_the_mpijob_it_replaced(reconciler: Reconciler, cluster: FakeCluster) -> None:
    """The re-created MPIJob has the old one's name (and so have its pods): Events match by uid, and pod Events only
    from after the MPIJob was made."""
    body = started(reconciler, cluster, GLUE)
    cluster.mpijobs["j-glue"]["metadata"].update(uid="uid-of-attempt-2", creationTimestamp="2026-12-01T10:00:00Z")
    cluster.set_conditions("j-glue", "Created")
    old_mpijob = warning("MPIJob", "j-glue", "BackoffLimitExceeded", "launcher failed", "2026-12-01T10:00:03Z")
    old_mpijob["involvedObject"]["uid"] = "uid-of-attempt-1"  # (posted late: the old one is still being deleted)
    cluster.warnings = [old_mpijob, warning("Pod", "j-glue-worker-0", "FailedScheduling", "attempt 1's pod",
                                            "2026-12-01T09:59:00Z")]
    sync(reconciler, body)
    assert body["status"]["phase"] == "Created" and not any(
        c["type"] == "Ready" and c["reason"] == "PodsPending" for c in body["status"]["conditions"])
    mine = warning("MPIJob", "j-glue", "FailedCreatePod", "quota", "2026-12-01T10:00:02Z")
    mine["involvedObject"]["uid"] = "uid-of-attempt-2"
    cluster.warnings.append(mine)
    sync(reconciler, body)
    assert condition(body["status"], "Ready")["message"] == "mpijob j-glue: FailedCreatePod: quota"


def test_a_namespace_being_deleted_gets_no_status_and_no_event(reconciler: Reconciler, cluster: FakeCluster) -> None:
    """A create answered 403 NamespaceTerminating ends the reconcile quietly; the namespace watch saying Terminating
    stops every later one before any call."""
    cluster.terminating = True
    body = job(GLUE)
    assert sync(reconciler, body) is None
    assert cluster.calls == [("create", "mpijobs", "j-glue")] and cluster.events == [] and not body.get("status")
    cluster.calls.clear()
    assert sync(reconciler, body) is None and cluster.calls == []
    reconciler.namespace_event("MODIFIED", {"metadata": {"name": "ml"}, "status": {"phase": "Active"}})
    cluster.terminating = False
    assert sync(reconciler, body)["phase"] == "Pending"
    reconciler.namespace_event("MODIFIED", {"metadata": {"name": "ml", "deletionTimestamp": NOW},
                                            "status": {"phase": "Terminating"}})
    cluster.calls.clear()
    cluster.set_conditions("j-glue", "Created", "Running", "Failed")  # its pods killed by the namespace's deletion
    assert sync(reconciler, body) is None and cluster.calls == [] and body["status"]["phase"] == "Pending"
    assert record(reconciler, body, {"progress": {"step": 1}}) is None and cluster.calls == []  # a late report too


def test_without_kueue_a_queued_stage_says_so_once_and_it_is_no_fault(reconciler: Reconciler, cluster: FakeCluster) -> None:
    cluster.kueue_installed = False
    body = job({**GLUE, "queueName": "team-a"})
    sync(reconciler, body)  # created suspended, for Kueue: Queued
    sync(reconciler, body)  # its Workload looked for: the API is not served
    ready = condition(body["status"], "Ready")
    assert body["status"]["phase"] == "Queued" and (ready["status"], ready["reason"]) == ("False", "KueueNotInstalled")
    assert "Kueue is not installed" in ready["message"] and "spec.queueName" in ready["message"]
    assert condition(body["status"], "Queued")["reason"] == "KueueNotInstalled"
    assert [kind for kind, _, _ in cluster.events] == ["Normal"]
    assert sync(reconciler, body) is None  # said once: nothing new to write


def terminating_answer(resource: str, name: str) -> Any:
    """The API server's 403 to a create in a namespace being deleted (the NamespaceLifecycle admission plugin)."""
    from kubernetes.client.rest import ApiException
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": f'{resource} "{name}" is forbidden: unable to create new content in namespace ml because it is being '
                   "terminated",
        "details": {"name": name, "kind": resource, "causes": [
            {"reason": "NamespaceTerminating", "type": "NamespaceTerminating",
             "message": "namespace ml is being terminated", "field": "metadata.namespace"}]}})
    return exc


def test_expected_answers_are_not_counted_as_api_errors_and_a_missing_kueue_is_asked_once() -> None:
    """bertoperator_api_errors_total is for alerting: a 404 that answers 'is it there?', a 409 that adopts, and a
    namespace being deleted are not errors."""
    import kubernetes
    from kubernetes.client.rest import ApiException
    from prometheus_client import REGISTRY

    from bert_operator.events import EventRecorder
    from bert_operator.kube import JsonWrites, KubeApi

    def counted() -> float:
        return sum(sample.value for metric in REGISTRY.collect() if metric.name == "bertoperator_api_errors"
                   for sample in metric.samples if sample.name == "bertoperator_api_errors_total")

    asked: list[str] = []

    class Answers:
        def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
            asked.append("list workloads")
            raise ApiException(status=404, reason="Not Found")

        def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
            raise ApiException(status=404, reason="Not Found")

    class Writes(JsonWrites):  # a job start's writes (MPIJob create, Event) go through JsonWrites
        def send(self, method: str, path: str, body: Any, content_type: str = "application/json") -> bytes:
            plural = path.rsplit("/", 1)[-1]
            raise terminating_answer("events" if plural == "events" else f"{plural}.kubeflow.org",
                                     body["metadata"]["name"])

    api = KubeApi(kubernetes.client.ApiClient(), backoff=0)
    api.custom = api.core = Answers()  # type: ignore[assignment]
    api.writes = Writes(api.writes.client)
    before = counted()
    assert api.get_mpijob("ml", "j-glue") is None
    with pytest.raises(KueueNotInstalled):
        api.find_workload("ml", "uid-1")
    with pytest.raises(KueueNotInstalled):
        api.find_workload("ml", "uid-2")
    assert asked == ["list workloads"]  # found once
    with pytest.raises(NamespaceTerminating):
        api.create_or_adopt_mpijob({"metadata": {"name": "j-glue", "namespace": "ml"}})
    EventRecorder(api).post(job(GLUE), "Normal", "Pending", "phase1: New -> Pending")  # no exception
    assert counted() == before


def test_the_api_client_says_a_courtesy_read_failed_only_for_the_clusters_faults() -> None:
    """KubeApi raises ReadFailed for an error answer (403 here), no answer (a refused connection) or an answer that
    is not JSON, naming the read; its own bugs are not translated."""
    import kubernetes
    import urllib3
    from kubernetes.client.rest import ApiException

    from bert_operator.kube import KubeApi
    from bert_operator.reconcile.ports import ReadFailed

    class Answers:
        fault: Exception

        def list_namespaced_event(self, *args: Any, **kwargs: Any) -> Any:
            raise self.fault

        def list_namespaced_pod(self, *args: Any, **kwargs: Any) -> Any:
            raise self.fault

        def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
            raise self.fault

    answers = Answers()
    api = KubeApi(kubernetes.client.ApiClient(), attempts=1, backoff=0)
    api.custom = api.core = answers  # type: ignore[assignment]
    faults = [ApiException(status=403, reason="Forbidden"), urllib3.exceptions.NewConnectionError(None, "refused"),
              ConnectionResetError("reset"), ValueError("Expecting value: line 1 column 1")]
    for fault in faults:
        answers.fault = fault
        with pytest.raises(ReadFailed, match="Warning Events of ml: "):
            api.list_warning_events("ml")
        with pytest.raises(ReadFailed, match="pods of j/squad: "):
            api.list_stage_pods("ml", "j", "squad")
        with pytest.raises(ReadFailed, match="the Workload of MPIJob uid u: "):
            api.find_workload("ml", "u")
    answers.fault = TypeError("a bug")
    with pytest.raises(TypeError):
        api.list_warning_events("ml")
