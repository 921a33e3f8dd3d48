"""Kubernetes Events about BertTrainingJobs, posted with the official client."""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from kubernetes.client.rest import ApiException

from .api.presets import API_GROUP, API_VERSION, KIND
from .kube import KubeApi, namespace_terminating

log = logging.getLogger(__name__)
COMPONENT = "bert-operator"


class EventRecorder:
    """Posts core/v1 Events (what `kubectl describe btj` lists)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        now = datetime.datetime.now(tz=datetime.timezone.utc)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": meta.get("name"),
                "namespace": namespace, "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message,  # bounded by its one caller, reconcile/writer.py
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        try:
            self.api.create_event(namespace, event)
        except ApiException as exc:
            if not namespace_terminating(exc):
                raise
            # The namespace is being deleted, the job with it: nobody is left to read the Event.
            log.debug("event not posted: namespace terminating job=%s/%s reason=%s", namespace, meta.get("name"), reason)
            return
        log.info("event job=%s/%s type=%s reason=%s", namespace, meta.get("name"), kind, reason)
