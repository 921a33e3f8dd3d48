"""The operator's view of BertTrainingPolicies and namespace labels: what the webhook and the reconciler decide with.

kopf's watches keep it current (:meth:`PolicyCache.policy_event`, :meth:`namespace_event`). Two reads close the
gaps a watch leaves: the first use lists every policy (a job met before the policy watch's first event must not
escape the policies), and a namespace not seen yet makes it list the namespaces again (a list, not a get, so that the
operator needs no more than the watch's verbs). Invalid policies (possible only with the webhook
off) are kept apart with their errors: they apply to no job, and their status says why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from .api import SpecError
from .api.policy import BertTrainingPolicy
from .policy import PolicyInput, conflicts, parse_policy, selects

log = logging.getLogger(__name__)


class PolicyApi(Protocol):
    """The reads the cache may make (kube.KubeApi)."""

    def list_policies(self) -> list[dict[str, Any]]: ...
    def list_namespace_labels(self) -> dict[str, dict[str, str]]: ...


class PolicyCache:
    """Policies by name, namespace labels by name; thread-safe (kopf's handlers and the webhook run in threads)."""

    def __init__(self, api: PolicyApi) -> None:
        self.api = api
        self.lock = threading.Lock()
        self.policies: dict[str, BertTrainingPolicy] = {}
        #: Policies that do not parse, with the errors (their status says so; they apply to nothing).
        self.invalid: dict[str, str] = {}
        #: The uid and generation each policy was last seen at (its status records observedGeneration).
        self.generations: dict[str, int | None] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.loaded = False

    # ------------------------------------------------------------ watches

    def policy_event(self, kind: str, body: Mapping[str, Any]) -> None:
        """A watch event of a BertTrainingPolicy (ADDED, MODIFIED, DELETED, or None for kopf's initial listing)."""
        name = str((body.get("metadata") or {}).get("name") or "")
        with self.lock:
            self.policies.pop(name, None)
            self.invalid.pop(name, None)
            if kind == "DELETED":
                self.generations.pop(name, None)
                return
            self.generations[name] = (body.get("metadata") or {}).get("generation")
            try:
                self.policies[name] = parse_policy(dict(body))
            except SpecError as exc:
                self.invalid[name] = exc.render()
                log.warning("policy invalid policy=%s problems=%d", name, len(exc.errors))

    def namespace_event(self, kind: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        with self.lock:
            if kind == "DELETED":
                self.namespaces.pop(str(meta.get("name")), None)
            else:
                self.namespaces[str(meta.get("name"))] = dict(meta.get("labels") or {})

    # ------------------------------------------------------------- reads

    def _load(self) -> None:
        """List every policy once. A policy CRD that is not installed lists as none (kube.py); any other failure
        propagates: the webhook refuses to admit, and the reconciler creates no MPIJob, saying why
        (Ready=False, reason PoliciesUnreadable), rather than run a job without its policies."""
        if self.loaded:
            return
        listed = self.api.list_policies()
        for body in listed:
            self.policy_event("ADDED", body)
        self.loaded = True

    def labels(self, namespace: str) -> dict[str, str]:
        with self.lock:
            known = self.namespaces.get(namespace)
        if known is not None:
            return known
        listed = self.api.list_namespace_labels()
        with self.lock:
            for name, labels in listed.items():
                self.namespaces.setdefault(name, labels)
            return dict(self.namespaces.get(namespace) or {})

    def input_for(self, namespace: str) -> PolicyInput | None:
        """The labels of `namespace` and every valid policy; None when there are no policies at all."""
        self._load()
        with self.lock:
            policies = tuple(self.policies[name] for name in sorted(self.policies))
        if not policies:
            return None
        return PolicyInput(self.labels(namespace), policies)

    def snapshot(self) -> "Snapshot":
        """Copies of the policies, the invalid ones' errors, their generations and the namespaces' labels."""
        self._load()
        with self.lock:
            return Snapshot(dict(self.policies), dict(self.invalid), dict(self.generations),
                            {k: dict(v) for k, v in self.namespaces.items()})


@dataclass(frozen=True)
class Snapshot:
    """The cache at one moment, for computing every policy's status from the same view."""

    policies: dict[str, BertTrainingPolicy]
    invalid: dict[str, str]
    generations: dict[str, int | None]
    namespaces: dict[str, dict[str, str]]


def policy_statuses(snapshot: Snapshot, jobs_in: Callable[[str], int]) -> dict[str, dict[str, Any]]:
    """Each policy's status by name: how many namespaces and jobs it selects, its conflicts, whether it is valid
    (conflicts are found once, over every namespace)."""
    found = conflicts(snapshot.policies.values(), snapshot.namespaces)
    out: dict[str, dict[str, Any]] = {}
    for name, errors in snapshot.invalid.items():
        condition = {"type": "Valid", "status": "False", "reason": "InvalidPolicy", "message": errors[:2000]}
        out[name] = {"namespaces": 0, "jobs": 0, "conflicts": [], "conditions": [condition],
                     "observedGeneration": snapshot.generations.get(name)}
    for name, policy in snapshot.policies.items():
        selected = [ns for ns, labels in snapshot.namespaces.items() if selects(policy.spec.namespace_selector, labels)]
        mine = found.get(name, [])
        if mine:  # its jobs there are refused until the platform team settles it
            condition = {"type": "Valid", "status": "False", "reason": "PolicyConflict",
                         "message": f"{len(mine)} conflict(s) with other policies; jobs there are refused: {mine[0]}"[:2000]}
        else:
            condition = {"type": "Valid", "status": "True", "reason": "PolicyValid", "message": "policy is valid"}
        out[name] = {"namespaces": len(selected), "jobs": sum(jobs_in(ns) for ns in selected), "conflicts": mine,
                     "conditions": [condition], "observedGeneration": snapshot.generations.get(name)}
    return out
