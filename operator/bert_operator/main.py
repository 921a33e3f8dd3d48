"""`bertjob operator`: run the kopf operator with this project's handlers."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

from . import handlers, webhook  # handlers registers the kopf handlers on import
from .config import OperatorSettings
from .runtime import Runtime


def run(settings: OperatorSettings) -> None:
    """Run until SIGINT/SIGTERM. Cluster-wide unless namespaces are given."""
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's login and ours read the same file
    debug = bool(os.environ.get("BERTOP_DEBUG"))
    # kopf logs every handler call at INFO (three lines per job start); keep its warnings and errors,
    # and this operator's own INFO lines (status changes, creations, Events).
    kopf.configure(log_format=kopf.LogFormat.JSON, log_prefix=False, verbose=False, debug=debug, quiet=not debug)
    logging.getLogger("bert_operator").setLevel(logging.DEBUG if debug else logging.INFO)
    runtime = Runtime.build(settings)
    if settings.webhook_port:
        handlers.register_webhook()
        logging.getLogger("kopf.objects").addFilter(webhook.RefusalsAreNotErrors())
    asyncio.run(kopf.operator(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        memo=kopf.Memo(runtime=runtime),
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None,
    ))
