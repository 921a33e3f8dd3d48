"""Keeping the catalog current: a list and watch of the job-template ConfigMaps of one namespace.

Why not a kopf handler: kopf watches a resource in every namespace it serves, and a cluster-wide watch of ConfigMaps
would need the right to read every ConfigMap of the cluster (application settings, tokens some charts keep there).
The templates live in the operator's own namespace only, so this watch is namespaced and its RBAC is a Role there
(the chart's job-templates.yaml). With each list it reads the MPIJob CRD too (by name, through the CRD list the
ClusterRole grants for kopf): its schema checks every templated MPIJob. It lists (which replaces the catalog whole:
a ConfigMap deleted while no watch ran is dropped), then watches from that list's resourceVersion; an expired
version (410) lists again at once, any error after a pause that doubles up to a minute, and a watch the server ends
at once (some do not hold watches open) after a second: the templates then follow the lists.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

import kubernetes

from .catalog import TEMPLATE_LABEL, Catalog
from .schema import MPIJOB_CRD

log = logging.getLogger(__name__)

#: Seconds the API server keeps one watch open before it ends it (the watch then resumes from the last version).
WATCH_SECONDS = 300
MAX_PAUSE_SECONDS = 60.0
#: A watch that ends sooner than this was not held open: the next list waits this long first.
MIN_WATCH_SECONDS = 1.0


class TemplateWatch:
    """The thread that feeds `catalog` from `namespace`'s ConfigMaps labelled as job templates; `changed` is called
    after each change (the runtime looks again at the jobs that need templates)."""

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str, catalog: Catalog,
                 changed: Callable[[], None]) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.crds = kubernetes.client.ApiextensionsV1Api(client)
        self.namespace, self.catalog, self.changed = namespace, catalog, changed
        self.stopped = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="bertoperator-templates", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        pause = 1.0
        while not self.stopped.is_set():
            try:
                version = self._list()
                started = time.monotonic()
                self._watch(version)
                pause = 1.0
                if time.monotonic() - started < MIN_WATCH_SECONDS:  # ended at once, without an error (a server that
                    self.stopped.wait(MIN_WATCH_SECONDS)            # does not hold watches open): a list a second
            except Exception as exc:  # noqa: BLE001 - the watch must outlive any failure of the API or the network
                status = getattr(exc, "status", None) if isinstance(exc, kubernetes.client.ApiException) else None
                if status == 410:  # an expired version only means: list again
                    continue
                log.warning("event=templates_unreadable namespace=%s error=%s", self.namespace, status or type(exc).__name__)
                self.stopped.wait(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)

    def _read_mpijob_crd(self) -> None:
        """The MPIJob CRD, whose schema every templated MPIJob is checked against (templates/schema.py). Read with
        the list the operator's ClusterRole grants for CRDs already (kopf lists them), by name."""
        try:
            listed = self.crds.list_custom_resource_definition(field_selector=f"metadata.name={MPIJOB_CRD}",
                                                               _preload_content=False, _request_timeout=30)
            items = json.loads(listed.data).get("items") or []
        except Exception as exc:  # noqa: BLE001 - said on the jobs that wait for it; the next list tries again
            status = getattr(exc, "status", None) if isinstance(exc, kubernetes.client.ApiException) else None
            changed = self.catalog.mpijob_crd(None, error=f"{status or type(exc).__name__}")
        else:
            crd = next((item for item in items if (item.get("metadata") or {}).get("name") == MPIJOB_CRD), None)
            changed = self.catalog.mpijob_crd(crd)
        if changed:
            self.changed()

    def _list(self) -> str:
        self._read_mpijob_crd()
        listed = self.core.list_namespaced_config_map(self.namespace, label_selector=TEMPLATE_LABEL,
                                                      _preload_content=False, _request_timeout=30)
        body: dict[str, Any] = json.loads(listed.data)
        if self.catalog.replace(body.get("items") or []):
            self.changed()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> None:
        watch = kubernetes.watch.Watch()
        for event in watch.stream(self.core.list_namespaced_config_map, self.namespace, label_selector=TEMPLATE_LABEL,
                                  resource_version=version, timeout_seconds=WATCH_SECONDS,
                                  _request_timeout=WATCH_SECONDS + 30):
            if self.stopped.is_set():
                watch.stop()
                return
            kind, raw = event.get("type"), event.get("raw_object") or {}
            if kind == "ERROR":
                raise kubernetes.client.ApiException(status=int(raw.get("code") or 0), reason=str(raw.get("reason")))
            if kind in ("ADDED", "MODIFIED", "DELETED") and self.catalog.configmap_event(kind, raw):
                self.changed()
