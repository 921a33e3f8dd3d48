"""The job templates the platform keeps in the operator's namespace: one ConfigMap each, kept current by a watch.

A ConfigMap is a template when it has the label ``bertoperator.io/job-template`` (its value: the template's name)
and its ``template.yaml`` holds the overlay (overlay.py's format; the chart makes them from ``jobTemplates:``).
A ConfigMap that cannot be used (no template.yaml, not an overlay, another name inside than its label's, a name
two ConfigMaps claim) makes that name unavailable, with the reason: the jobs that need it wait, every other job
goes on. Why a snapshot per reconcile: the plan is pure; it reads the templates as they were when it began.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Mapping

from .overlay import Overlay, TemplateInvalid, parse_overlay
from .schema import MPIJOB_CRD, SchemaCheck, mpijob_check

log = logging.getLogger(__name__)

#: The label that makes a ConfigMap a job template; its value is the template's name.
TEMPLATE_LABEL = "bertoperator.io/job-template"
#: The ConfigMap key that holds the overlay.
TEMPLATE_KEY = "template.yaml"


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """A template name the jobs cannot use now, and why (said in their Ready condition while they wait)."""

    reason: str


Snapshot = Mapping[str, Any]

#: The snapshot's key for the cluster's MPIJob CRD schema (a schema.SchemaCheck, or Unavailable when it cannot be
#: read): not a template name, which is a DNS label. Absent where no cluster is (local mode, the CLI).
MPIJOB_SCHEMA = "customresourcedefinitions/mpijobs.kubeflow.org"


def read_configmap(body: Mapping[str, Any]) -> tuple[str, Overlay | Unavailable] | None:
    """(template name, the overlay or why not) of a ConfigMap; None when it is no job template."""
    meta = body.get("metadata") or {}
    name = (meta.get("labels") or {}).get(TEMPLATE_LABEL)
    if not isinstance(name, str) or not name:
        return None
    where = f"ConfigMap {meta.get('namespace')}/{meta.get('name')}"
    text = (body.get("data") or {}).get(TEMPLATE_KEY)
    if not isinstance(text, str):
        return name, Unavailable(f"{where} has no {TEMPLATE_KEY}")
    try:
        overlay = parse_overlay(text, where)
    except TemplateInvalid as exc:
        return name, Unavailable(f"{where}: {exc}")
    if overlay.name != name:
        return name, Unavailable(f"{where} is labelled {name!r} but holds template {overlay.name!r}")
    return name, overlay


#: Earlier versions kept per template name, so that a stage made again (an automatic restart) renders as it did.
KEPT_VERSIONS = 4


class Catalog:
    """The templates of the watched ConfigMaps, by ConfigMap name; thread-safe (watch thread, reconcile threads).

    The snapshot holds each name's current template under its name, and the versions seen before under
    ``name@version`` (at most KEPT_VERSIONS per name, in this process's memory: a restarted operator knows only the
    current ones)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[str, tuple[str, Overlay | Unavailable]] = {}
        self._snapshot: dict[str, Any] = {}
        self._earlier: dict[str, dict[str, Overlay]] = {}
        self._schema: tuple[str, SchemaCheck] | Unavailable | None = None  # (resourceVersion, check)

    def configmap_event(self, kind: str | None, body: Mapping[str, Any]) -> bool:
        """Follow one ConfigMap's change; whether the templates by name changed (the jobs need to look again)."""
        got = None if kind == "DELETED" else read_configmap(body)
        if got is not None:
            name, template = got
            if isinstance(template, Unavailable):
                log.warning("event=template_unavailable template=%s reason=%r", name, template.reason)
            else:
                log.info("event=template_loaded template=%s configmap=%s", template.ref, _key(body))
        with self._lock:
            read = {key: value for key, value in self._read.items() if key != _key(body)}
            if got is not None:
                read[_key(body)] = got
            return self._set(read)

    def replace(self, configmaps: list[Mapping[str, Any]]) -> bool:
        """The catalog as a list of the labelled ConfigMaps says it is (one not listed is gone); whether the templates
        by name changed."""
        read = {_key(body): got for body in configmaps if (got := read_configmap(body)) is not None}
        with self._lock:
            changed = self._set(read)
        if changed:
            log.info("event=templates_listed templates=%s", ",".join(sorted(n for n, _ in read.values())) or "-")
        return changed

    def mpijob_crd(self, crd: Mapping[str, Any] | None, error: str | None = None) -> bool:
        """Follow the cluster's MPIJob CRD (None: not installed; `error`: why it could not be read); whether the
        snapshot changed. A read that fails after one succeeded keeps the schema read before."""
        if error is not None:
            got: tuple[str, SchemaCheck] | Unavailable = Unavailable(
                f"the MPIJob CustomResourceDefinition {MPIJOB_CRD} could not be read ({error})")
        elif crd is None:
            got = Unavailable(f"the MPIJob CustomResourceDefinition {MPIJOB_CRD} is not installed")
        else:
            version = str((crd.get("metadata") or {}).get("resourceVersion") or "")
            if isinstance(self._schema, tuple) and self._schema[0] == version:
                return False
            try:
                got = (version, mpijob_check(dict(crd)))
            except ValueError as exc:
                got = Unavailable(str(exc))
        with self._lock:
            if isinstance(got, Unavailable) and isinstance(self._schema, tuple) and error is not None:
                return False
            if got == self._schema:
                return False
            if isinstance(got, Unavailable):
                log.warning("event=mpijob_crd_unavailable reason=%r", got.reason)
            self._schema = got
            return self._set(self._read)

    def _set(self, read: dict[str, tuple[str, Overlay | Unavailable]]) -> bool:
        """The catalog of these ConfigMaps (called under the lock); whether the templates by name changed."""
        before = self._snapshot
        snapshot: dict[str, Any] = self._with_earlier(_snapshot(read))
        if self._schema is not None:
            snapshot[MPIJOB_SCHEMA] = self._schema[1] if isinstance(self._schema, tuple) else self._schema
        self._read, self._snapshot = read, snapshot
        return before != self._snapshot

    def _with_earlier(self, current: dict[str, Overlay | Unavailable]) -> dict[str, Overlay | Unavailable]:
        """`current` plus every version seen of each name under name@version (called under the lock)."""
        for got in current.values():
            if isinstance(got, Overlay):
                versions = self._earlier.setdefault(got.name, {})
                versions.pop(got.version, None)
                versions[got.version] = got
                while len(versions) > KEPT_VERSIONS:
                    versions.pop(next(iter(versions)))
        return {**{ref: overlay for versions in self._earlier.values() for ref, overlay in
                   ((o.ref, o) for o in versions.values())}, **current}

    def snapshot(self) -> Snapshot:
        """The templates by name, as they are now (an immutable view: later events make a new one)."""
        with self._lock:
            return self._snapshot


def _key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _snapshot(read: Mapping[str, tuple[str, Overlay | Unavailable]]) -> dict[str, Overlay | Unavailable]:
    by_name: dict[str, list[tuple[str, Overlay | Unavailable]]] = {}
    for configmap, (name, got) in sorted(read.items()):
        by_name.setdefault(name, []).append((configmap, got))
    out: dict[str, Overlay | Unavailable] = {}
    for name, found in by_name.items():
        if len(found) > 1:
            out[name] = Unavailable(f"ConfigMaps {', '.join(c for c, _ in found)} all claim template {name!r}")
        else:
            out[name] = found[0][1]
    return out
