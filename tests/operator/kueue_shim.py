"""Kueue and the MPI Operator as far as the operator meets them, played against the emulated API server.

There is no real Kueue here. What the operator depends on is small and documented, and this shim does
exactly that through the API, over HTTP like the real controllers:

- Kueue's MPIJob webhook (mutating admission, installed in the strict layer): a new MPIJob that carries
  ``kueue.x-k8s.io/queue-name`` is stored with ``runPolicy.suspend: true``;
- Kueue's job controller: a Workload per queued MPIJob, labelled ``kueue.x-k8s.io/job-uid`` with the MPIJob's
  uid, its conditions (QuotaReserved, Admitted, Evicted) as Kueue writes them; admission clears the
  MPIJob's suspend, preemption evicts the Workload and sets suspend again;
- the MPI Operator's answer to suspend: ``Suspended`` (and ``Running`` back on resume) conditions.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import kmock

from tests.operator.cluster import EmulatedCluster

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
WORKLOADS = "kueue.x-k8s.io/v1beta1/workloads"


def webhook(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Kueue's MPIJob defaulting webhook: a queued MPIJob is created suspended."""
    if plural != "mpijobs" or not ((obj.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL):
        return obj
    obj = copy.deepcopy(obj)
    obj.setdefault("spec", {}).setdefault("runPolicy", {})["suspend"] = True
    return obj


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": _now()}


class KueueShim:
    """Kueue's controller for the MPIJobs of one namespace of an EmulatedCluster."""

    def __init__(self, cluster: EmulatedCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

        async def declare() -> None:
            cluster.emulator.resources[WORKLOADS] = kmock.ResourceInfo(
                kind="Workload", singular="workload", namespaced=True,
                verbs={"list", "watch", "get", "patch", "create", "delete"}, subresources={"status"})

        cluster.call(declare)

    def _mpijob(self, name: str) -> dict[str, Any]:
        return self.cluster.custom.get_namespaced_custom_object("kubeflow.org", "v2beta1", self.namespace, "mpijobs", name)

    def _set(self, name: str, suspend: bool, *conditions: str) -> None:
        self.cluster.custom.patch_namespaced_custom_object("kubeflow.org", "v2beta1", self.namespace, "mpijobs", name,
                                                           {"spec": {"runPolicy": {"suspend": suspend}}})
        self.cluster.set_mpijob_conditions(self.namespace, name, *conditions)

    def workload_name(self, mpijob: str) -> str:
        return f"mpijob-{mpijob}-7c1e2"

    def workload(self, mpijob: str) -> dict[str, Any]:
        return self.cluster.custom.get_namespaced_custom_object("kueue.x-k8s.io", "v1beta1", self.namespace, "workloads",
                                                                self.workload_name(mpijob))

    def _conditions(self, mpijob: str, conditions: list[dict[str, Any]]) -> None:
        self.cluster.custom.patch_namespaced_custom_object_status(
            "kueue.x-k8s.io", "v1beta1", self.namespace, "workloads", self.workload_name(mpijob),
            {"status": {"conditions": conditions}})

    def pending(self, mpijob: str, message: str) -> None:
        """Kueue makes the MPIJob's Workload; there is no quota for it yet."""
        uid = self._mpijob(mpijob)["metadata"]["uid"]
        body = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
                "metadata": {"name": self.workload_name(mpijob), "namespace": self.namespace,
                             "labels": {"kueue.x-k8s.io/job-uid": uid}},
                "spec": {"active": True, "queueName": self._mpijob(mpijob)["metadata"]["labels"][QUEUE_LABEL]},
                "status": {"conditions": [_condition("QuotaReserved", "False", "Pending", message)]}}
        self.cluster.custom.create_namespaced_custom_object("kueue.x-k8s.io", "v1beta1", self.namespace, "workloads", body)
        self._conditions(mpijob, body["status"]["conditions"])
        self.cluster.set_mpijob_conditions(self.namespace, mpijob, "Created", "Suspended")

    def admit(self, mpijob: str) -> None:
        """Quota reserved and admitted: Kueue clears suspend, the MPI Operator starts the MPIJob."""
        self._conditions(mpijob, [_condition("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue gpus"),
                                  _condition("Admitted", "True", "Admitted", "The workload is admitted")])
        self._set(mpijob, False, "Created", "Running")

    def preempt(self, mpijob: str) -> None:
        """A higher-priority Workload needs the quota: evicted, suspended again (the pods get SIGTERM)."""
        why = "Preempted to accommodate a workload (UID: 9d1c) due to prioritization in the ClusterQueue"
        self._conditions(mpijob, [_condition("QuotaReserved", "False", "Pending", why),
                                  _condition("Admitted", "False", "NoReservation", "The workload has no reservation"),
                                  _condition("Evicted", "True", "Preempted", why)])
        self._set(mpijob, True, "Created", "Suspended")
