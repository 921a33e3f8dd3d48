"""Progress and results from the trainer onto the BertTrainingJob status.

Mechanism (see README, "Progress"): rank 0 of the trainer POSTs its
progress.json / results.json to the operator's `/progress/<namespace>/<name>`
endpoint with a projected service-account token whose audience is that job's
own (`bert-operator/<namespace>/<name>`). The operator checks the token with a
TokenReview for exactly that audience, then reads the pod the token was minted
for and accepts the report only if that pod still exists with the token's uid
and carries the job's `bertoperator.io/job-name` label and the report's stage as
its `bertoperator.io/stage` label. The token is checked before the body is
parsed, and the body is bounded (size, nesting, read time). The operator thus needs
no access to Secrets or object storage and no per-job RBAC objects; it reads
pods (get) in the jobs' namespaces.

An accepted report reaches the Prometheus training gauges through the status it writes: the reconciler's writer
tells bert_operator.training_metrics of every status written, so a refused report never creates a series.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import ssl
from typing import Any, Callable

from aiohttp import web

from . import serving, status as sm
from .api import SpecError
from .api.parse import parse_job
from bert_common.contract import (
    JOB_NAME_LABEL, POD_NAME_EXTRA, POD_UID_EXTRA, REPORT_STAGE, STAGE_LABEL, parse_utc, token_audience,
)
from .kube import KubeApi
from .metrics import PROGRESS_REPORTS
from .reconcile import Reconciler
from .reports import StaleReport, merge_report
from .serving import Limits
from . import reasons

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
        reason, message = reasons.NO_REPORT, f"no progress reported in {int(started)}s of running"
    elif age > stale_after:
        reason, message = reasons.STALE, f"last progress report is {int(age)}s old"
    else:
        return None
    current = sm.condition_of(status, sm.PROGRESS_AVAILABLE)
    if current and current.get("status") == "False" and current.get("reason") == reason:
        return None
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = sm.set_condition(status.get("conditions") or [], sm.PROGRESS_AVAILABLE, False, reason, message, stamp,
                                  status.get("observedGeneration"))
    return {"conditions": conditions}


#: The largest report body read (a results report is a few KB); a larger one is refused unread (413).
MAX_BODY_BYTES = 64 * 1024
#: Deepest JSON nesting a report body may have: reports.MAX_DEPTH below results, and the envelope around it.
MAX_BODY_DEPTH = 8
#: Seconds a client has to send a request's body once its headers arrived (a slow-loris sender is cut off).
READ_TIMEOUT_SECONDS = 10.0


def nesting(text: str) -> int:
    """The deepest [ or { nesting of a JSON text, counted without parsing it (strings skipped), so that a
    deeply nested body is refused before the recursive decoder sees it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def decode_report(body: bytes) -> dict[str, Any]:
    """A report body as an object; ValueError saying what is wrong with it. NaN and Infinity are read (Python's
    json writes them) and nulled by reports.merge_report before anything reaches the status."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body must be JSON in UTF-8") from None
    if nesting(text) > MAX_BODY_DEPTH:
        raise ValueError(f"body: nested deeper than {MAX_BODY_DEPTH} levels")
    try:
        report = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("body must be JSON") from None
    if not isinstance(report, dict):
        raise ValueError("body must be a JSON object")
    return report


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES, timeout: float = READ_TIMEOUT_SECONDS) -> bytes:
    """The request's body, at most `limit` bytes and within `timeout` seconds: web.HTTPRequestEntityTooLarge or
    TimeoutError otherwise (a body trickled in a byte at a time must not hold a connection and a task for ever)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)

    async def read() -> bytes:
        data = b""
        while len(data) <= limit:
            chunk = await request.content.read(limit + 1 - len(data))
            if not chunk:
                return data
            data += chunk
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))

    return await asyncio.wait_for(read(), timeout)


class ProgressEndpoint:
    """aiohttp handler for trainer reports; authenticated by TokenReview before the body is even parsed."""

    def __init__(self, api: KubeApi, reconciler: Reconciler, clock: Callable[[], str],
                 limits: Limits = Limits(read_timeout=READ_TIMEOUT_SECONDS)) -> None:
        self.api = api
        self.reconciler = reconciler
        self.clock = clock
        self.limits = limits

    def _refusal(self, namespace: str, name: str, user: dict[str, Any], stage: Any) -> str | None:
        """Why the token's pod may not report for this job, or None: it must be a pod of this namespace that
        exists now, whose uid is the token's, whose job-name label (set by the renderer) names this job, and whose
        stage label names the stage the report is for (a phase-1 pod cannot write phase 2's progress)."""
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
        labels = meta.get("labels") or {}
        if labels.get(JOB_NAME_LABEL) != name:
            return f"{who} may not report for {namespace}/{name}: it is not a pod of that job"
        if isinstance(stage, str) and labels.get(STAGE_LABEL) != stage:  # not a string: merge_report says so
            return f"{who} may not report for stage {str(stage)[:63]!r}: it is a pod of stage {labels.get(STAGE_LABEL)!r}"
        return None

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/progress/{namespace}/{name}", self.handle)]

    async def serve(self, host: str | None, port: int,
                    ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, serving.CappedSite]:
        """Serve the endpoint within its limits (bert_operator.serving); the runner to clean up, and the site."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes(self.routes())
        return await serving.serve(app, host, port, self.limits, ssl_context)

    async def handle(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            PROGRESS_REPORTS.labels(outcome="unauthenticated").inc()
            return web.json_response({"error": "Authorization: Bearer <projected token> required"}, status=401)
        try:
            body = await read_body(request, timeout=self.limits.read_timeout)
        except web.HTTPRequestEntityTooLarge:
            PROGRESS_REPORTS.labels(outcome="malformed").inc()
            return web.json_response({"result": "malformed", "message": f"body: at most {MAX_BODY_BYTES} bytes"},
                                     status=413, headers={"Connection": "close"})
        except asyncio.TimeoutError:
            PROGRESS_REPORTS.labels(outcome="malformed").inc()
            return web.json_response({"result": "malformed", "message": f"body not sent within {self.limits.read_timeout:g}s"},
                                     status=408, headers={"Connection": "close"})
        try:
            outcome, code, text = await asyncio.get_running_loop().run_in_executor(
                None, self.apply, namespace, name, header.removeprefix("Bearer ").strip(), body
            )
        except Exception as exc:  # the API server failed us; the trainer retries later
            log.exception("progress report failed job=%s/%s", namespace, name)
            outcome, code, text = "error", 503, f"could not record the report: {type(exc).__name__}"
        PROGRESS_REPORTS.labels(outcome=outcome).inc()
        return web.json_response({"result": outcome, "message": text}, status=code)

    def apply(self, namespace: str, name: str, token: str, body: bytes) -> tuple[str, int, str]:
        """Authenticate, then parse, authorise, validate and write one report; (outcome, HTTP code, message).
        The token is checked first, so nothing an unauthenticated caller sends is ever parsed."""
        review = self.api.review_token(token, token_audience(namespace, name))
        if not review.get("authenticated"):
            return "unauthenticated", 401, f"token not accepted by the API server for audience {token_audience(namespace, name)}"
        try:
            report = decode_report(body)
        except ValueError as exc:
            return "malformed", 400, str(exc)
        refusal = self._refusal(namespace, name, review.get("user") or {}, report.get(REPORT_STAGE))
        if refusal:
            return "forbidden", 403, refusal
        with self.reconciler.lock(namespace, name):
            found = self.api.get_job(namespace, name)
            if found is None:
                return "not-found", 404, f"no BertTrainingJob {namespace}/{name}"
            try:
                job = parse_job(found)
            except SpecError:
                return "invalid-job", 409, "the job's spec is invalid"
            try:
                patch = merge_report(job, found.get("status") or {}, report, self.clock())
            except StaleReport as exc:
                return "stale", 409, str(exc)
            except ValueError as exc:
                return "malformed", 400, str(exc)
            self.reconciler.record(found, patch)
        return "accepted", 200, "ok"
