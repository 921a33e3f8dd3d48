"""Pod label and annotation keys the operator, the MPI Operator, Kueue and gang schedulers own.

A user's `spec.resources.podTemplate` may add any other key to the launcher and
worker pods. These are refused, because whoever owns a key writes it: a user's
value would either be overwritten silently or, worse, win and break what the
owner selects on (the operator's watch, the MPI Operator's Services and hostfile,
Kueue's admission, a PodGroup's membership). One list serves labels and
annotations alike: none of these keys means anything else on a pod.
"""

from __future__ import annotations

from typing import Final

from bert_common.contract import LABEL_PREFIX

KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL: Final = "kueue.x-k8s.io/priority-class"
#: Labels the renderer puts on every pod it makes (with the job-name, stage and task labels under LABEL_PREFIX).
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"

#: Exact keys, and who owns each (said in the error message).
RESERVED_KEYS: Final[dict[str, str]] = {
    MANAGED_BY_LABEL: "bert-operator (its pod label)",
    PART_OF_LABEL: "bert-operator (its pod label)",
    KUEUE_QUEUE_LABEL: "Kueue (set from spec.queueName)",
    KUEUE_PRIORITY_LABEL: "Kueue (set from spec.workloadPriorityClassName)",
    "scheduling.k8s.io/group-name": "the MPI Operator (Volcano's PodGroup annotation)",
    "scheduling.x-k8s.io/pod-group": "the MPI Operator (scheduler-plugins' PodGroup label)",
}
#: Key prefixes (the part before '/'), and who owns them.
RESERVED_PREFIXES: Final[dict[str, str]] = {
    LABEL_PREFIX: "bert-operator",
    "training.kubeflow.org": "the MPI Operator",
}


def owner_of(key: str) -> str | None:
    """Who owns `key` on a pod, or None when a user may set it."""
    if key in RESERVED_KEYS:
        return RESERVED_KEYS[key]
    prefix, slash, _ = key.rpartition("/")
    return RESERVED_PREFIXES.get(prefix) if slash else None


def reserved_listing() -> str:
    """The reserved keys and prefixes, as an error message lists them."""
    return ", ".join([*RESERVED_KEYS, *(f"{prefix}/*" for prefix in RESERVED_PREFIXES)])
