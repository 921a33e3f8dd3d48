"""Storage URIs and the paths pods see them at (pvc:// mounts, the synced dataset).

Task-independent: which sub-folder a stage reads and where it writes are its
task's answers (``bert_operator.tasks``), built from these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from .models import BertTrainingJobSpec

#: Where a worker finds its dataset when it was synced from object storage.
SYNCED_DATA_ROOT = "/data"
#: Where persistent volume claims are mounted: /mnt/pvc/<claim>.
PVC_MOUNT_ROOT = "/mnt/pvc"


@dataclass(frozen=True)
class PvcRef:
    """A `pvc://claim/path` URI split into its claim and path."""

    claim: str
    path: str

    @classmethod
    def parse(cls, uri: str) -> "PvcRef":
        rest = uri.removeprefix("pvc://")
        claim, _, path = rest.partition("/")
        return cls(claim, path.strip("/"))

    def mount_path(self) -> str:
        return f"{PVC_MOUNT_ROOT}/{self.claim}"

    def local_path(self) -> str:
        return str(PurePosixPath(self.mount_path(), self.path)) if self.path else self.mount_path()


def is_pvc(uri: str) -> bool:
    return uri.startswith("pvc://")


def in_pod(uri: str) -> str:
    """How a pod addresses `uri`: s3:// stays as is (the trainer uses boto3), pvc:// becomes its mount path."""
    return PvcRef.parse(uri).local_path() if is_pvc(uri) else uri


def join(base: str, *parts: str) -> str:
    """Join URI or path segments with single slashes."""
    pieces = [base.rstrip("/"), *(part.strip("/") for part in parts if part)]
    return "/".join(pieces)


def resolved(uri: str | None) -> str:
    """A store's URI in a job about to run. The models allow None (output.uri may come from a policy, dataset.uri from
    a producer's fromJob), but a job is rendered only after its policies and producers gave them."""
    if uri is None:
        raise ValueError("a location is not resolved yet: render a job after its policies and producers")
    return uri


def data_root(spec: BertTrainingJobSpec) -> str:
    """Dataset root inside a worker: synced copy for s3://, the mounted claim for pvc://."""
    uri = resolved(spec.dataset.uri)
    return in_pod(uri) if is_pvc(uri) else SYNCED_DATA_ROOT

