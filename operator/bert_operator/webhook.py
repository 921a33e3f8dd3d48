"""Admission validation: the API server asks, before storing a BertTrainingJob, whether its spec is valid.

The verdict is `bert_operator.api.parse_job`, the same function the CLI and the
reconciler use, so a rejected `kubectl apply` shows exactly the field-path
lines `bertjob validate` prints (without the file name). The operator keeps
validating on its own: with the webhook off, an invalid job still ends
`Failed` with `Valid=False, reason=InvalidSpec`.

The webhook configuration is not managed by the operator (no RBAC on
admissionregistration): the Helm chart ships the ValidatingWebhookConfiguration
and its certificate (cert-manager, or one Helm generates), and the operator
only serves HTTPS with the mounted `tls.crt`/`tls.key` (re-read when renewed), within bert_operator.serving's
limits (read timeout, connection cap).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

import kopf
from aiohttp import web

from . import dependencies, serving
from .api import SpecError
from .api.parse import parse_job
from .api.required import unset_errors
from .api.status import ACCEPTED_SPEC
from .policy import PolicyInput, decide, parse_policy, selecting, serve_limit_errors
from .runtime import plain
from .serving import Limits

#: kopf serves each admission handler at /<handler id>; the chart's webhook configuration points there.
HANDLER_ID = "validate-berttrainingjob"
PATH = f"/{HANDLER_ID}"
POLICY_HANDLER_ID = "validate-berttrainingpolicy"
#: 422 Unprocessable Entity, the code the API server itself uses for invalid objects.
INVALID_CODE = 422

log = logging.getLogger(__name__)


def verdict(body: Mapping[str, Any], policy: PolicyInput | None = None) -> tuple[str | None, list[str]]:
    """(None if `body` is a valid BertTrainingJob that its namespace's policies allow, else one `path: message` line
    per problem with the policy's name in each policy line; what the policies will set, one line each)."""
    try:
        job = plain(body)
        if policy is None:  # no policies at all, or a started job (its output is recorded: none is required now)
            parsed = parse_job(job)
            started = bool((job.get("status") or {}).get(ACCEPTED_SPEC))
            return "\n".join(str(error) for error in ([] if started else unset_errors(parsed))) or None, []
        holding = policy.holding()
        if holding:  # fail closed: an invalid policy selects this namespace
            return "\n".join(f"metadata.namespace: {held.message()}; no job is admitted here until the platform team "
                             f"fixes or deletes it" for held in holding), []
        decision = decide(job, policy.labels, policy.policies)
    except SpecError as exc:
        return exc.render(), []
    shown = [f"BertTrainingPolicy {a['policy']} sets {a['path']} ({a['how']}): {a['value']}"
             for a in (decision.status() or {}).get("applied", [])]
    return "\n".join(str(error) for error in decision.violations) or None, shown


def validate_job(body: Mapping[str, Any], memo: Any = None, warnings: list[str] | None = None, **_: Any) -> None:
    """kopf validating handler: refuse an invalid job, or one its namespace's BertTrainingPolicies do not allow,
    with every field error; admit an allowed one with a warning per value the policies give it (kubectl prints
    them), so a user sees at apply time why the job gets a queue or a node selector. An update of a started job is
    judged as a job only: policies bind jobs before they start."""
    namespace = (body.get("metadata") or {}).get("namespace", "default")
    started = bool((body.get("status") or {}).get(ACCEPTED_SPEC))
    policies = memo.runtime.policies.input_for(namespace) if memo is not None and not started else None
    problems, applied = verdict(body, policies)
    if problems is None and memo is not None and not started:
        problems = _cycle(body, namespace, memo.runtime.jobs)
    if problems is None and memo is not None and started:
        problems = serving_limits(body, memo.runtime.policies.input_for(namespace))
    if problems is None:
        if warnings is not None:
            warnings.extend(applied)
        return
    meta = body.get("metadata") or {}
    log.info("admission refused job=%s/%s problems=%d", meta.get("namespace"), meta.get("name"), len(problems.splitlines()))
    raise kopf.AdmissionError(problems, code=INVALID_CODE)


def serving_limits(body: Mapping[str, Any], policy: PolicyInput | None) -> str | None:
    """'path: message' lines for a started job's spec.serve that breaks a serving limit of its namespace's policies:
    spec.serve may be added or changed after the job ran, so those limits bind it then too (the operator checks them
    again before it makes or changes the InferenceService)."""
    if policy is None or not (body.get("spec") or {}).get("serve"):
        return None
    try:
        job = parse_job(plain(body))
    except SpecError:
        return None  # judged above
    errors = list(serve_limit_errors(job, selecting(policy.policies, policy.labels)))
    return "\n".join(str(error) for error in errors) or None


def _cycle(body: Mapping[str, Any], namespace: str, known: Mapping[tuple[str, str], dict[str, Any]]) -> str | None:
    """'path: message' when this job and the jobs it names (as the operator's watch cache holds them) wait for each
    other, so that `kubectl apply` refuses the job that closes a cycle; the operator fails one that got past."""
    job = plain(body)
    spec, name = job.get("spec") or {}, (job.get("metadata") or {}).get("name", "")
    if not dependencies.raw_references(spec):
        return None
    found = dependencies.cycle_error(name, spec, dependencies.chain(name, spec, lambda other: known.get((namespace, other))))
    return None if found is None else str(found)


def validate_policy(body: Mapping[str, Any], **_: Any) -> None:
    """kopf validating handler: refuse an invalid BertTrainingPolicy with every field error."""
    try:
        parse_policy(plain(body))
    except SpecError as exc:
        log.info("admission refused policy=%s problems=%d", (body.get("metadata") or {}).get("name"), len(exc.errors))
        raise kopf.AdmissionError(exc.render(), code=INVALID_CODE) from None


#: The largest AdmissionReview read: a job of the API server's 1.5 MiB object limit, twice (object and oldObject).
MAX_REVIEW_BYTES = 4 * 1024 * 1024


class WebhookServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server (its certificate handling and its admission requests) on a serving.CappedSite:
    kopf's own site takes neither a read timeout nor a connection cap, so a client that opens connections and
    never finishes a request would hold them for an hour each (see bert_operator.serving)."""

    def __init__(self, *, limits: Limits = Limits(), **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        #: The port it serves on once started (the one given, or the one the system chose for 0).
        self.bound_port: int | None = None

    async def __call__(self, fn: Any) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def serve_one(request: web.Request) -> web.StreamResponse:
            try:
                await asyncio.wait_for(request.read(), self.limits.read_timeout)  # kopf reads it again, from memory
            except asyncio.TimeoutError:
                return web.Response(status=408, text=f"request body not sent within {self.limits.read_timeout:g}s",
                                    headers={"Connection": "close"})
            return await self._serve(fn, request)

        path = self.path.rstrip("/") if self.path else ""
        while True:
            cadata, context = self._build_ssl()
            app = web.Application(client_max_size=MAX_REVIEW_BYTES)
            app.add_routes([web.post(f"{path}/{{id:.*}}", serve_one)])
            runner, site = await serving.serve(app, self.addr or None, self.port or 0, self.limits, context, reuse_port=True)
            self.bound_port = site.port
            try:
                config = kopf.WebhookClientConfig(url=f"https://{self.host or 'localhost'}:{site.port}{path}")
                if cadata is not None:
                    config["caBundle"] = base64.b64encode(cadata).decode("ascii")
                yield config
                await self._until_files_change()
            finally:
                await runner.cleanup()

    async def _until_files_change(self) -> None:
        """Return once the certificate files' contents change (a renewed Secret); mounted Secrets give no file
        events, so they are read every file_check_interval seconds, as kopf does."""
        paths = [str(path) for path in (self.certfile, self.pkeyfile, self.cafile) if path is not None]

        def digest() -> str:
            hasher = hashlib.sha256()
            for path in paths:
                hasher.update(Path(path).read_bytes())
            return hasher.hexdigest()

        first = digest()
        while digest() == first:
            await asyncio.sleep(self.file_check_interval)


def server(port: int, cert_dir: str, file_check_interval: float = 60.0, limits: Limits = Limits()) -> WebhookServer:
    """HTTPS on all interfaces with the certificate pair mounted at `cert_dir` (a kubernetes.io/tls Secret)."""
    directory = Path(cert_dir)
    return WebhookServer(
        addr="0.0.0.0", port=port, certfile=str(directory / "tls.crt"), pkeyfile=str(directory / "tls.key"),
        file_check_interval=file_check_interval, limits=limits,
    )


class RefusalsAreNotErrors(logging.Filter):
    """kopf logs every refused admission as an ERROR ("... failed permanently"); a user's invalid
    `kubectl apply` is not an operator error. Such records become INFO (seen with BERTOP_DEBUG=1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        refusals = tuple(f"Webhook {handler!r} failed permanently" for handler in (HANDLER_ID, POLICY_HANDLER_ID))
        if record.levelno == logging.ERROR and message.startswith(refusals):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True

