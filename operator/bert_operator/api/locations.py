"""Where each stage reads and writes, as URIs and as paths inside the pods.

The renderer needs these to build command lines and volume mounts; the
operator needs :func:`report_uri` to find a stage's progress.json and
results.json. Keeping both in one place means they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from .models import BertTrainingJobSpec, PrepareDataTask
from .presets import NVIDIA_CORPUS_FOLDER
from .stages import Stage

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


def data_root(spec: BertTrainingJobSpec) -> str:
    """Dataset root inside a worker: synced copy for s3://, the mounted claim for pvc://."""
    return in_pod(spec.dataset.uri) if is_pvc(spec.dataset.uri) else SYNCED_DATA_ROOT


def stage_data_path(spec: BertTrainingJobSpec, stage: Stage) -> str:
    """Sub-folder of the dataset a stage reads (empty: the whole dataset)."""
    task = spec.task
    if task.pretrain is not None:
        phase = task.pretrain.phases[stage.index]
        if phase.data_path is not None:
            return phase.data_path.strip("/")
        # The set a prepareData job with default settings writes for this phase.
        records = PrepareDataTask(max_seq_length=phase.max_seq_length, max_predictions_per_seq=phase.max_predictions_per_seq)
        return f"{records.folder_name(lower_case=spec.model.lower_case)}/{NVIDIA_CORPUS_FOLDER}"
    if task.glue is not None:
        return (task.glue.data_dir or task.glue.task_name).strip("/")
    return ""


def output_root(spec: BertTrainingJobSpec) -> str:
    """The output location as the trainer sees it."""
    return in_pod(spec.output.uri)


def stage_output(spec: BertTrainingJobSpec, stage: Stage, *, in_pod_form: bool = True) -> str:
    """Where a stage writes its checkpoints or records, progress.json and results.json."""
    base = output_root(spec) if in_pod_form else spec.output.uri
    if spec.task.prepare_data is not None:
        folder = spec.task.prepare_data.folder_name(lower_case=spec.model.lower_case)
        return join(base, folder, NVIDIA_CORPUS_FOLDER)
    return join(base, stage.name)


def report_uri(spec: BertTrainingJobSpec, stage: Stage) -> str:
    """URI (s3:// or pvc://) of the folder holding a stage's progress.json and results.json."""
    return stage_output(spec, stage, in_pod_form=False)
