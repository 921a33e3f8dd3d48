"""Progress and results from the trainer onto the BertTrainingJob status.

Mechanism (see README, "Progress"): rank 0 of the trainer POSTs its
progress.json / results.json to the operator's `/progress/<namespace>/<name>`
endpoint with a projected service-account token whose audience is
`bert-operator`. The operator checks the token with a TokenReview and accepts
it only from a pod of that job's MPIJobs in that namespace. The operator thus
needs no access to Secrets or object storage, and no per-job RBAC objects.
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
from .contract import TOKEN_AUDIENCE
from .kube import KubeApi
from .metrics import PROGRESS_REPORTS
from .reconcile import Reconciler
from .reports import merge_report

log = logging.getLogger(__name__)
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
def _age_seconds(stamp: str | None, now: datetime.datetime) -> float | None:
    if not stamp:
        return None
    try:
        then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.timezone.utc)
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

    def __init__(self, api: KubeApi, reconciler: Reconciler, clock: Callable[[], str], audience: str = TOKEN_AUDIENCE) -> None:
        self.api = api
        self.reconciler = reconciler
        self.clock = clock
        self.audience = audience

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
        """Authenticate, validate and write one report; (outcome, HTTP code, message)."""
        review = self.api.review_token(token, self.audience)
        user = review.get("user") or {}
        pod = ((user.get("extra") or {}).get(POD_NAME_EXTRA) or [""])[0]
        if not review.get("authenticated"):
            return "unauthenticated", 401, "token not accepted by the API server"
        if not (user.get("username") or "").startswith(f"system:serviceaccount:{namespace}:") or not pod.startswith(f"{name}-"):
            return "forbidden", 403, f"token of {user.get('username')} pod {pod!r} may not report for {namespace}/{name}"
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
