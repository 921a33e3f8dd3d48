"""Admission validation: the API server asks, before storing a BertTrainingJob, whether its spec is valid.

The verdict is `bert_operator.api.parse_job`, the same function the CLI and the
reconciler use, so a rejected `kubectl apply` shows exactly the field-path
lines `bertjob validate` prints (without the file name). The operator keeps
validating on its own: with the webhook off, an invalid job still ends
`Failed` with `Valid=False, reason=InvalidSpec`.

The webhook configuration is not managed by the operator (no RBAC on
admissionregistration): the Helm chart ships the ValidatingWebhookConfiguration
and its certificate (cert-manager, or one Helm generates), and the operator
only serves HTTPS with the mounted `tls.crt`/`tls.key` (re-read when renewed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import kopf

from .api import SpecError
from .api.parse import parse_job
from .runtime import plain

#: kopf serves each admission handler at /<handler id>; the chart's webhook configuration points there.
HANDLER_ID = "validate-berttrainingjob"
PATH = f"/{HANDLER_ID}"
#: 422 Unprocessable Entity, the code the API server itself uses for invalid objects.
INVALID_CODE = 422

log = logging.getLogger(__name__)


def verdict(body: Mapping[str, Any]) -> str | None:
    """None if `body` is a valid BertTrainingJob, else one `path: message` line per problem."""
    try:
        parse_job(plain(body))
    except SpecError as exc:
        return exc.render()
    return None


def validate_job(body: Mapping[str, Any], **_: Any) -> None:
    """kopf validating handler: refuse an invalid job with every field error."""
    problems = verdict(body)
    if problems is not None:
        meta = body.get("metadata") or {}
        log.info("admission refused job=%s/%s problems=%d", meta.get("namespace"), meta.get("name"), len(problems.splitlines()))
        raise kopf.AdmissionError(problems, code=INVALID_CODE)


def server(port: int, cert_dir: str, file_check_interval: float = 60.0) -> kopf.WebhookServer:
    """HTTPS on all interfaces with the certificate pair mounted at `cert_dir` (a kubernetes.io/tls Secret)."""
    directory = Path(cert_dir)
    return kopf.WebhookServer(
        addr="0.0.0.0", port=port, certfile=str(directory / "tls.crt"), pkeyfile=str(directory / "tls.key"),
        file_check_interval=file_check_interval,
    )


class RefusalsAreNotErrors(logging.Filter):
    """kopf logs every refused admission as an ERROR ("... failed permanently"); a user's invalid
    `kubectl apply` is not an operator error. Such records become INFO (seen with BERTOP_DEBUG=1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.getMessage().startswith(f"Webhook {HANDLER_ID!r} failed permanently"):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True

