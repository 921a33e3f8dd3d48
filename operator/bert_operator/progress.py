"""Progress and results from the trainer onto the BertTrainingJob status.

Mechanism (see README, "Progress"): rank 0 of the trainer POSTs its
progress.json / results.json to the operator's `/progress/<namespace>/<name>`
endpoint with a projected service-account token whose audience is that job's
own (`bert-operator/<namespace>/<name>`). The operator checks the token with a
TokenReview for exactly that audience, then reads the pod the token was minted
for and accepts the report only if that pod still exists with the token's uid
and carries the job's `bertoperator.io/job-name` label. The operator thus needs
no access to Secrets or object storage and no per-job RBAC objects; it reads
pods (get) in the jobs' namespaces.

An accepted report reaches the Prometheus training gauges through the status it writes: the reconciler's writer
tells bert_operator.training_metrics of every status written, so a refused report never creates a series.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any, Callable

from aiohttp import web

from . import status as sm
from .api import SpecError
from .api.parse import parse_job
from .contract import JOB_NAME_LABEL, POD_NAME_EXTRA, POD_UID_EXTRA, parse_utc, token_audience
from .kube import KubeApi
from .metrics import PROGRESS_REPORTS
from .reconcile import Reconciler
from .reports import merge_report

log = logging.getLogger(__name__)
def _age_seconds(stamp: str | None, now: datetime.datetime) -> float | None:
    if not stamp:
        return None
    try:
        then = parse_utc(stamp)
    except ValueError:
        return None
    return (now - then).total_seconds()


def staleness_patch(status: dict[str, Any], now: datetime.datetime, stale_after: float) -> dict[str, Any] | None:
    """ProgressAvailable=False when a running job's progress is missing or older than `stale_after` (pure)."""
    if status.get("phase") != "Running":
        return None
    progress = status.get("progress") or {}
    age = _age_seconds(progress.get("updatedAt"), now)
    if age is None:
        started = _age_seconds(status.get("startTime"), now)
        if started is None or started < stale_after:
            return None
        reason, message = "NoReport", f"no progress reported in {int(started)}s of running"
    elif age > stale_after:
        reason, message = "Stale", f"last progress report is {int(age)}s old"
    else:
        return None
    current = sm.condition_of(status, sm.PROGRESS_AVAILABLE)
    if current and current.get("status") == "False" and current.get("reason") == reason:
        return None
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = sm.set_condition(status.get("conditions") or [], sm.PROGRESS_AVAILABLE, False, reason, message, stamp,
                                  status.get("observedGeneration"))
    return {"conditions": conditions}


class ProgressEndpoint:
    """aiohttp handler for trainer reports; authenticated by TokenReview."""

    def __init__(self, api: KubeApi, reconciler: Reconciler, clock: Callable[[], str]) -> None:
        self.api = api
        self.reconciler = reconciler
        self.clock = clock

    def _refusal(self, namespace: str, name: str, user: dict[str, Any]) -> str | None:
        """Why the token's pod may not report for this job, or None: it must be a pod of this namespace that
        exists now, whose uid is the token's, and whose job-name label (set by the renderer) names this job."""
        extra = user.get("extra") or {}
        pod_name = (extra.get(POD_NAME_EXTRA) or [""])[0]
        pod_uid = (extra.get(POD_UID_EXTRA) or [""])[0]
        who = f"token of {user.get('username')} pod {pod_name!r}"
        if not (user.get("username") or "").startswith(f"system:serviceaccount:{namespace}:") or not pod_name:
            return f"{who} may not report for {namespace}/{name}: not a pod token of namespace {namespace}"
        pod = self.api.get_pod(namespace, pod_name)
        if pod is None:
            return f"{who} may not report for {namespace}/{name}: no such pod"
        meta = pod.get("metadata") or {}
        if pod_uid and meta.get("uid") != pod_uid:
            return f"{who} may not report for {namespace}/{name}: the pod of that name is another pod now"
        if (meta.get("labels") or {}).get(JOB_NAME_LABEL) != name:
            return f"{who} may not report for {namespace}/{name}: it is not a pod of that job"
        return None

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/progress/{namespace}/{name}", self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            PROGRESS_REPORTS.labels(outcome="unauthenticated").inc()
            return web.json_response({"error": "Authorization: Bearer <projected token> required"}, status=401)
        try:
            report = await request.json()
        except ValueError:
            PROGRESS_REPORTS.labels(outcome="malformed").inc()
            return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(report, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            outcome, code, text = await asyncio.get_running_loop().run_in_executor(
                None, self.apply, namespace, name, header.removeprefix("Bearer ").strip(), report
            )
        except Exception as exc:  # the API server failed us; the trainer retries later
            log.exception("progress report failed job=%s/%s", namespace, name)
            outcome, code, text = "error", 503, f"could not record the report: {type(exc).__name__}"
        PROGRESS_REPORTS.labels(outcome=outcome).inc()
        return web.json_response({"result": outcome, "message": text}, status=code)

    def apply(self, namespace: str, name: str, token: str, report: dict[str, Any]) -> tuple[str, int, str]:
        """Authenticate, authorise, validate and write one report; (outcome, HTTP code, message)."""
        review = self.api.review_token(token, token_audience(namespace, name))
        if not review.get("authenticated"):
            return "unauthenticated", 401, f"token not accepted by the API server for audience {token_audience(namespace, name)}"
        refusal = self._refusal(namespace, name, review.get("user") or {})
        if refusal:
            return "forbidden", 403, refusal
        with self.reconciler.lock(namespace, name):
            body = self.api.get_job(namespace, name)
            if body is None:
                return "not-found", 404, f"no BertTrainingJob {namespace}/{name}"
            try:
                job = parse_job(body)
            except SpecError:
                return "invalid-job", 409, "the job's spec is invalid"
            try:
                patch = merge_report(job, body.get("status") or {}, report, self.clock())
            except ValueError as exc:
                return "malformed", 400, str(exc)
            self.reconciler.record(body, patch)
        return "accepted", 200, "ok"
