"""The operator's view of BertTrainingPolicies and namespace labels: what the webhook and the reconciler decide with.

kopf's watches keep it current (:meth:`PolicyCache.policy_event`, :meth:`namespace_event`). Two reads close the
gaps a watch leaves: the first use lists every policy (a job met before the policy watch's first event must not
escape the policies), and a namespace not seen yet makes it list the namespaces again (a list, not a get, so that the
operator needs no more than the watch's verbs).

An invalid policy (the CRD's rules and the webhook refuse one; it gets here with both off, or from before them)
fails closed: the last valid generation seen of it stays in force; a policy never seen valid holds the namespaces it
selects (every namespace, when its selector cannot be read either), so that no MPIJob is made there until it is fixed
(policy.InvalidPolicy, reconcile/policy_step.py). Either way its status says why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Protocol

from .api import SpecError
from .api.policy import BertTrainingPolicy
from .policy import InvalidPolicy, PolicyInput, conflicts, parse_policy, selector_of, selects
from . import reasons

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
        #: The valid policies by name: for a policy whose latest generation is invalid, the last valid one seen.
        self.policies: dict[str, BertTrainingPolicy] = {}
        #: Policies whose latest generation is invalid, with the errors (their status says so).
        self.invalid: dict[str, InvalidPolicy] = {}
        #: The uid and generation each policy was last seen at (its status records observedGeneration).
        self.generations: dict[str, int | None] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.loaded = False

    # ------------------------------------------------------------ watches

    def policy_event(self, kind: str, body: Mapping[str, Any]) -> None:
        """A watch event of a BertTrainingPolicy (ADDED, MODIFIED, DELETED, or None for kopf's initial listing)."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        with self.lock:
            self.invalid.pop(name, None)
            if kind == "DELETED":
                self.policies.pop(name, None)
                self.generations.pop(name, None)
                return
            self.generations[name] = meta.get("generation")
            try:
                self.policies[name] = parse_policy(dict(body))
            except SpecError as exc:
                self.invalid[name] = InvalidPolicy(name, exc.render(), selector_of(dict(body)))
                last = self.policies.get(name)
                if last is not None and getattr(last.metadata, "uid", None) != meta.get("uid"):
                    self.policies.pop(name)  # an earlier object of that name: nothing of this one was ever valid
                log.warning("policy invalid policy=%s problems=%d enforcing=%s", name, len(exc.errors),
                            "last valid generation" if name in self.policies else "none: its namespaces wait")

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
        """The labels of `namespace`, every valid policy (or last valid generation), and the invalid policies that
        have none; None when there are no policies at all."""
        self._load()
        with self.lock:
            policies = tuple(self.policies[name] for name in sorted(self.policies))
            held = tuple(self._held(name) for name in sorted(self.invalid))
        if not policies and not held:
            return None
        return PolicyInput(self.labels(namespace), policies, held)

    def _held(self, name: str) -> InvalidPolicy:
        """An invalid policy as it holds namespaces: beside its last valid generation, if any (the caller holds the
        lock)."""
        invalid, last = self.invalid[name], self.policies.get(name)
        return invalid if last is None else replace(invalid, enforced=last.spec.namespace_selector)

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
    invalid: dict[str, InvalidPolicy]
    generations: dict[str, int | None]
    namespaces: dict[str, dict[str, str]]


def policy_statuses(snapshot: Snapshot, jobs_in: Callable[[str], int]) -> dict[str, dict[str, Any]]:
    """Each policy's status by name: how many namespaces and jobs it selects, its conflicts, whether it is valid
    (conflicts are found once, over every namespace). An invalid policy counts the namespaces it holds, or those
    its last valid generation (still in force) selects."""
    found = conflicts(snapshot.policies.values(), snapshot.namespaces)
    out: dict[str, dict[str, Any]] = {}
    for name, broken in snapshot.invalid.items():
        if name in snapshot.policies:
            continue
        selected = [ns for ns, labels in snapshot.namespaces.items() if broken.selects(labels)]
        message = (f"invalid; no new MPIJob is made in the {len(selected)} namespace(s) it selects until it is fixed "
                   f"or deleted: {broken.error}")
        condition = {"type": "Valid", "status": "False", "reason": reasons.INVALID_POLICY, "message": message[:2000]}
        out[name] = {"namespaces": len(selected), "jobs": sum(jobs_in(ns) for ns in selected), "conflicts": [],
                     "conditions": [condition], "observedGeneration": snapshot.generations.get(name)}
    for name, policy in snapshot.policies.items():
        selected = [ns for ns, labels in snapshot.namespaces.items() if selects(policy.spec.namespace_selector, labels)]
        mine = found.get(name, [])
        if name in snapshot.invalid:  # the last valid generation still applies; what only the new selector picks waits
            held = replace(snapshot.invalid[name], enforced=policy.spec.namespace_selector)
            waiting = sum(1 for labels in snapshot.namespaces.values() if held.selects(labels))
            message = (f"generation {snapshot.generations.get(name)} is invalid; generation {policy.metadata.generation} "
                       f"still applies until it is fixed, and no new MPIJob is made in the {waiting} other namespace(s) "
                       f"the invalid generation selects: {held.error}")
            condition = {"type": "Valid", "status": "False", "reason": reasons.INVALID_POLICY, "message": message[:2000]}
        elif mine:  # its jobs there are refused until the platform team settles it
            condition = {"type": "Valid", "status": "False", "reason": reasons.POLICY_CONFLICT,
                         "message": f"{len(mine)} conflict(s) with other policies; jobs there are refused: {mine[0]}"[:2000]}
        else:
            condition = {"type": "Valid", "status": "True", "reason": reasons.POLICY_VALID, "message": "policy is valid"}
        out[name] = {"namespaces": len(selected), "jobs": sum(jobs_in(ns) for ns in selected), "conflicts": mine,
                     "conditions": [condition], "observedGeneration": snapshot.generations.get(name)}
    return out
