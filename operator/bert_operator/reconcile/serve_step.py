"""The plan's serving step: a succeeded job's KServe InferenceService (spec.serve) and its status.serving.

Once every stage succeeded, a job with spec.serve gets one InferenceService, named after the job and owned by it (the
garbage collector deletes it with the job): created when missing, patched when spec.serve changed, deleted when
spec.serve is removed. The job's phase stays Succeeded whatever the InferenceService does: serving is reported in
status.serving (its URL, whether its Ready condition is True, the first condition that is not, the model and its
version), and its changes in Events. No finalizer: the owner reference is the cleanup.

spec.serve may change after the job started (the only field besides runPolicy.suspend), so a policy's serving limits
are checked here whenever the InferenceService would be made or changed, not only before the job started; policies
that cannot be read hold it (fail closed). What was last applied is kept on the InferenceService as an annotation, so
that a change patches only the fields this operator set (KServe's webhook fills in many more).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import reasons
from ..api import BertTrainingJob
from ..api.stages import Stage
from ..api.errors import FieldError
from ..policy import PoliciesUnreadable, selecting, serve_limit_errors
from ..render.inference import model_version, render_inference_service, repository_uri, served_model
from ..status import MAX_MESSAGE_BYTES, bounded, errors_message
from bert_common.contract import LABEL_PREFIX
from .decisions import Action, Context, CreateInferenceService, DeleteInferenceService, Event, PatchInferenceService
from .observe import NOT_READ, RefusedCreate

#: The annotation holding the spec this operator last applied to an InferenceService (JSON), as kubectl apply keeps
#: its last-applied-configuration: a change nulls exactly the fields it set before and no longer sets.
LAST_APPLIED_ANNOTATION = f"{LABEL_PREFIX}/serve-applied"
#: status.serving's key, and its conditions kept (KServe writes about eight).
SERVING = "serving"
MAX_CONDITIONS = 12


@dataclass(frozen=True)
class Served:
    """The serving part of the next status (None: no status.serving) and the Events it deserves."""

    serving: dict[str, Any] | None
    events: tuple[Event, ...] = field(default=())


def step(ctx: Context, job: BertTrainingJob, phase: str, stage: Stage | None = None,
         best_missing: bool = False) -> Action | Served | None:
    """The write the job's serving needs next, or its status.serving; None when serving is not the job's business
    (it has not succeeded): status.serving is then left as it was. `stage`: the stage whose export is served (a
    sweep's best trial; default the last stage); `best_missing`: a sweep none of whose trials has the selected
    metric, so there is no best to serve."""
    if phase != "Succeeded":
        return None
    old = ctx.old.get(SERVING) if isinstance(ctx.old.get(SERVING), dict) else None
    found = ctx.observed.inference_service
    uid = ctx.body["metadata"].get("uid")
    if job.spec.serve is None:
        if isinstance(found, dict) and owned(found, uid) and not _deleting(found):
            uid_found = (found.get("metadata") or {}).get("uid")  # (an API emulator may give none)
            return DeleteInferenceService(job.metadata.namespace, job.metadata.name, str(uid_found or ""))
        if old is None:
            return Served(None)
        return Served(None, (Event("Normal", reasons.INFERENCE_SERVICE_DELETED,
                                   f"InferenceService {job.metadata.name} deleted: spec.serve was removed"),))
    base = _base(job, stage)
    refused = _refusal(ctx, job)
    if refused is None and best_missing:
        refused = "no trial of the sweep reported the metric it selects by, so there is no best trial to serve"
    if refused is not None:
        return _refused(old, base, refused)
    if isinstance(found, RefusedCreate):
        return _refused(old, base, f"the API server refused InferenceService {job.metadata.name}: {found.message}")
    desired = render_inference_service(job, ctx.settings, stage)
    applied = _applied(desired)
    if found is None or found is NOT_READ:
        return CreateInferenceService(_with_applied(desired, applied))
    if not owned(found, uid):
        return _refused(old, base, f"an InferenceService named {job.metadata.name} exists and is not this job's (no "
                                   "controller reference to it); delete it, or serve this job under another name")
    before = ((found.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED_ANNOTATION)
    if before != applied and not _deleting(found):
        return PatchInferenceService(job.metadata.namespace, job.metadata.name, _patch(before, desired, applied))
    return _following(old, {**base, "appliedHash": _hash(applied)}, found)


def _base(job: BertTrainingJob, stage: Stage | None = None) -> dict[str, Any]:
    """What status.serving says whatever the InferenceService does: its name, the model and where it is loaded from."""
    return {"inferenceService": job.metadata.name, "model": served_model(job), "modelVersion": model_version(job, stage),
            "storageUri": repository_uri(job, stage)}


def _refusal(ctx: Context, job: BertTrainingJob) -> str | None:
    """Why the InferenceService may not be made or changed now: the policies cannot be read (fail closed), or the
    serve spec breaks a serving limit of a policy that selects the namespace."""
    given = ctx.observed.policy
    if isinstance(given, PoliciesUnreadable):
        return f"the BertTrainingPolicies cannot be read ({given.reason}); serving waits for them"
    if given is None:
        return None
    errors: list[FieldError] = list(serve_limit_errors(job, selecting(given.policies, given.labels)))
    return errors_message(errors, "spec.serve breaks a BertTrainingPolicy: ") if errors else None


def _refused(old: dict[str, Any] | None, base: dict[str, Any], why: str) -> Served:
    """Not ready, saying why; the Warning once per distinct reason."""
    reason = bounded(why, MAX_MESSAGE_BYTES)
    serving = {**(old or {}), **base, "ready": False, "reason": reason}
    said = (old or {}).get("reason") == reason
    return Served(serving, () if said else (Event("Warning", reasons.SERVING_REFUSED, why),))


def _following(old: dict[str, Any] | None, base: dict[str, Any], found: dict[str, Any]) -> Served:
    """status.serving from the InferenceService's own status, with an Event when it was made, became ready, or
    stopped being ready."""
    raw = found.get("status")
    status: dict[str, Any] = raw if isinstance(raw, dict) else {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict) and isinstance(c.get("type"), str)]
    ready_condition = next((c for c in conditions if c["type"] == "Ready"), {})
    ready = ready_condition.get("status") == "True" and not _deleting(found)
    serving: dict[str, Any] = {**base, "ready": ready,
                               "conditions": [_condition(c) for c in conditions[:MAX_CONDITIONS]]}
    if isinstance(status.get("url"), str) and status["url"]:
        serving["url"] = status["url"][:2048]
    why = _why_not_ready(found, conditions) if not ready else None
    if why:
        serving["reason"] = why
    events: list[Event] = []
    name = base["inferenceService"]
    if old is None or "appliedHash" not in old:
        events.append(Event("Normal", reasons.INFERENCE_SERVICE_CREATED,
                            f"InferenceService {name} created: {base['model']} from {base['storageUri']}"))
    elif old["appliedHash"] != base["appliedHash"]:
        events.append(Event("Normal", reasons.INFERENCE_SERVICE_UPDATED, f"InferenceService {name} updated to the new "
                                                                          "spec.serve"))
    was_ready = (old or {}).get("ready") is True
    if ready and not was_ready:
        events.append(Event("Normal", reasons.SERVING_READY, f"InferenceService {name} is ready at {serving.get('url')}"))
    elif was_ready and not ready:
        events.append(Event("Warning", reasons.SERVING_NOT_READY, f"InferenceService {name} is not ready: {why}"))
    return Served(serving, tuple(events))


#: Which condition that is not True says why first: a component's own (the cause), then any other, then those that
#: only follow from the rest (the ingress waits for the components; Ready for everything).
_CAUSES = {"PredictorReady": 0, "TransformerReady": 1, "IngressReady": 3, "Ready": 4}


def _why_not_ready(found: Mapping[str, Any], conditions: list[dict[str, Any]]) -> str:
    """The condition that says best why it is not ready, as `PredictorReady: reason: message` (KServe's Ready and
    IngressReady only follow the components'), or that KServe has not reported yet."""
    if _deleting(found):
        return "being deleted"
    if not conditions:
        return "KServe has not reported on it yet"
    pending = sorted((c for c in conditions if c.get("status") != "True"), key=lambda c: _CAUSES.get(c["type"], 2))
    first = pending[0] if pending else conditions[0]
    detail = ": ".join(str(part) for part in (first.get("reason"), first.get("message")) if part)
    return bounded(f"{first['type']}: {detail}" if detail else f"{first['type']} is {first.get('status')}",
                   MAX_MESSAGE_BYTES)


def _condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    """One of KServe's conditions as status.serving holds it (Knative's shape, severity left out)."""
    status = condition.get("status") if condition.get("status") in ("True", "False", "Unknown") else "Unknown"
    out: dict[str, Any] = {"type": str(condition["type"])[:128], "status": status}
    for key in ("reason", "message", "lastTransitionTime"):
        if isinstance(condition.get(key), str):
            out[key] = bounded(condition[key], 1024)
    return out


def owned(made: Mapping[str, Any], uid: str | None) -> bool:
    """Whether the job is the controller of an object it makes once (its InferenceService, its cleanup Job): an owner
    reference with controller: true, of the job's uid where the job has one."""
    owners = (made.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, dict) and o.get("controller") and (uid is None or o.get("uid") == uid) for o in owners)


def _deleting(isvc: Mapping[str, Any]) -> bool:
    return bool((isvc.get("metadata") or {}).get("deletionTimestamp"))


def _applied(desired: Mapping[str, Any]) -> str:
    """The annotation's value: the spec rendered, as compact sorted JSON."""
    return json.dumps(desired["spec"], sort_keys=True, separators=(",", ":"))


def _hash(applied: str) -> str:
    return hashlib.sha256(applied.encode()).hexdigest()[:16]


def _with_applied(desired: dict[str, Any], applied: str) -> dict[str, Any]:
    metadata = desired["metadata"]
    return {**desired, "metadata": {**metadata, "annotations": {**metadata.get("annotations", {}),
                                                                  LAST_APPLIED_ANNOTATION: applied}}}


def _patch(before: str | None, desired: dict[str, Any], applied: str) -> dict[str, Any]:
    """The merge patch from what was last applied to what is desired now: nulls for the fields no longer set."""
    try:
        last = json.loads(before) if before else {}
    except ValueError:
        last = {}
    return {"metadata": {"annotations": {LAST_APPLIED_ANNOTATION: applied}, "labels": desired["metadata"]["labels"]},
            "spec": _diff(last if isinstance(last, dict) else {}, desired["spec"])}


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: the merge patch turning `old` into `new` (lists replaced whole)."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            inner = _diff(old[key], value)
            if inner:
                out[key] = inner
        elif old.get(key) != value or key not in old:
            out[key] = value
    out.update({key: None for key in old if key not in new})
    return out


__all__ = ["LAST_APPLIED_ANNOTATION", "SERVING", "Served", "step"]
