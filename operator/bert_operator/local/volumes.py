"""Where a job's volumes live on this machine, and how in-pod paths map onto them.

A rendered MPIJob addresses storage by mount path (`/mnt/pvc/<claim>/...` for
PersistentVolumeClaims, `/data/...` for the dataset synced from object
storage). Local mode keeps those command lines exactly and maps each mount
path to a folder, as a kubelet binds a volume to a mount: that is the only
difference between a local run and a pod.

A claim's folder comes from, in order: `--volume CLAIM=DIR`; the job's
annotation `local.bertoperator.io/pvc.<claim>: DIR` (relative to the YAML
file, so an example can carry its inputs); else `<workdir>/volumes/<claim>`.

A job file may come from someone else, and local mode runs it with the user's
files and keys: an annotation only names a folder inside the file's own folder
(no absolute path, `~`, `..`, hidden folder or symlink out of it), so a file
cannot make `bertjob` read `~/.ssh` and upload it to an endpoint the file
names. Any other folder is the user's to give, with `--volume`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.locations import PvcRef, SYNCED_DATA_ROOT, is_pvc
from ..api.models import BertTrainingJob

#: Annotation prefix naming a claim's local folder; the operator ignores it.
CLAIM_ANNOTATION_PREFIX = "local.bertoperator.io/pvc."


class LocalSetupError(Exception):
    """Local mode cannot run this job as given; the message names the field or flag to fix."""


@dataclass(frozen=True)
class VolumeMap:
    """Claim name -> local folder, plus the folder standing in for the synced-dataset emptyDir."""

    claims: dict[str, Path]
    default_root: Path
    synced_data: Path
    sources: dict[str, str] = field(default_factory=dict)  # claim -> where its folder was set (for messages)

    def claim_dir(self, claim: str) -> Path:
        return self.claims.get(claim) or self.default_root / claim

    def local_uri(self, uri: str) -> str:
        """A spec URI as local mode reads it: pvc:// becomes its folder, s3:// stays."""
        if not is_pvc(uri):
            return uri
        ref = PvcRef.parse(uri)
        return str(self.claim_dir(ref.claim) / ref.path) if ref.path else str(self.claim_dir(ref.claim))

    def mounts(self, mpijob: dict[str, Any]) -> list[tuple[str, Path]]:
        """(mount path, local folder) for every volume the MPIJob's pods mount, longest path first."""
        return self.pod_mounts([replica["template"]["spec"] for replica in (mpijob["spec"]["mpiReplicaSpecs"] or {}).values()])

    def pod_mounts(self, pods: list[dict[str, Any]]) -> list[tuple[str, Path]]:
        """(mount path, local folder) for every volume the pods (their specs) mount, longest path first."""
        table: dict[str, Path] = {}
        for pod in pods:
            volumes = {v["name"]: v for v in pod.get("volumes") or []}
            for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
                for mount in container.get("volumeMounts") or []:
                    volume = volumes.get(mount["name"]) or {}
                    if "persistentVolumeClaim" in volume:
                        table[mount["mountPath"]] = self.claim_dir(volume["persistentVolumeClaim"]["claimName"])
                    elif mount["mountPath"] == SYNCED_DATA_ROOT:
                        table[mount["mountPath"]] = self.synced_data
        return sorted(table.items(), key=lambda item: len(item[0]), reverse=True)


def claim_annotations(jobs: list[BertTrainingJob]) -> dict[str, tuple[str, str]]:
    """Claim -> (folder as annotated, job that says so) over every job of a file: a claim is one volume of the
    namespace, so a job reading another job's output (spec.dataset.fromJob, ...) finds it where its producer wrote
    it. Two jobs giving one claim different folders is refused."""
    found: dict[str, tuple[str, str]] = {}
    for job in jobs:
        for key, value in job.metadata.annotations.items():
            if not key.startswith(CLAIM_ANNOTATION_PREFIX):
                continue
            claim = key[len(CLAIM_ANNOTATION_PREFIX):]
            earlier = found.setdefault(claim, (value, job.metadata.name))
            if earlier[0] != value:
                raise LocalSetupError(f"metadata.annotations[{key}]: job {job.metadata.name} puts claim {claim} in "
                                      f"{value!r}, job {earlier[1]} in {earlier[0]!r}; one claim is one folder")
    return found


def annotated_folder(claim: str, value: str, yaml_dir: Path | None) -> Path:
    """The folder an annotation names: relative to the job file's folder and inside it once symlinks are resolved;
    anything else is refused (see the module docstring)."""
    where = f"metadata.annotations[{CLAIM_ANNOTATION_PREFIX}{claim}]"
    allowed = (f"a folder inside the job file's folder, relative to it; give any other folder with "
               f"--volume {claim}=DIR")
    if yaml_dir is None:
        raise LocalSetupError(f"{where}: a job file read from standard input has no folder; {allowed}")
    path = Path(value)
    if not value or "\0" in value or path.is_absolute() or value.startswith("~"):
        raise LocalSetupError(f"{where}: {value!r} is not relative; {allowed}")
    if any(part == ".." or part.startswith(".") and part != "." for part in path.parts):
        raise LocalSetupError(f"{where}: {value!r} names a parent or hidden folder; {allowed}")
    base = yaml_dir.resolve()
    folder = (base / path).resolve()
    if folder != base and base not in folder.parents:
        raise LocalSetupError(f"{where}: {value!r} leads to {folder}, outside {base} (a symlink); {allowed}")
    return folder


def volume_map(job: BertTrainingJob, yaml_dir: Path | None, overrides: dict[str, Path], workdir: Path, job_dir: Path,
               annotated: dict[str, tuple[str, str]] | None = None) -> VolumeMap:
    """The folders one job's claims use: flags win over annotations (the file's, else the job's own), annotations
    over the default."""
    claims: dict[str, Path] = {}
    sources: dict[str, str] = {}
    for claim, (value, _) in (annotated if annotated is not None else claim_annotations([job])).items():
        if claim in overrides:
            continue  # the flag wins; the file's folder for it is never looked at
        claims[claim] = annotated_folder(claim, value, yaml_dir)
        sources[claim] = f"metadata.annotations[{CLAIM_ANNOTATION_PREFIX}{claim}]"
    for claim, path in overrides.items():
        claims[claim] = path.expanduser().resolve()
        sources[claim] = f"--volume {claim}={path}"
    return VolumeMap(claims, (workdir / "volumes").resolve(), (job_dir / "data").resolve(), sources)


def to_local(arg: str, mounts: list[tuple[str, Path]]) -> str:
    """An argument with a leading in-pod mount path replaced by its local folder (others unchanged)."""
    for mount_path, folder in mounts:
        if arg == mount_path or arg.startswith(mount_path.rstrip("/") + "/"):
            return str(folder) + arg[len(mount_path.rstrip("/")):]
    return arg


def _inside_annotated(field_path: str, uri: str, local: Path, volumes: VolumeMap) -> None:
    """A path under a claim whose folder a job file's annotation named stays inside that folder once symlinks are
    resolved: a symlink below the folder (`tiny/keys -> ~/.ssh`) would lead out of it as surely as the annotation."""
    claim = PvcRef.parse(uri).claim
    if not volumes.sources.get(claim, "").startswith("metadata.annotations"):
        return  # --volume or the default folder: the user's own choice
    folder = volumes.claim_dir(claim).resolve()
    resolved = local.resolve()
    if resolved != folder and folder not in resolved.parents:
        raise LocalSetupError(f"{field_path}: {uri} leads to {resolved}, outside {folder} (a symlink); a job file's "
                              f"claims reach only inside its own folder; give any other folder with --volume {claim}=DIR")


def check_inputs(job: BertTrainingJob, volumes: VolumeMap) -> None:
    """Fail before starting anything when a local input named by the spec is missing.

    Only pvc:// inputs are checked here (object storage is checked by the trainer, which
    reaches it with the credentials of the environment). Outputs are created as needed, and
    inputs another job makes (spec.dataset.fromJob, ...) are that job's outputs.
    """
    spec = job.spec
    inputs = [("spec.dataset.uri", spec.dataset.uri), ("spec.model.vocab", spec.model.vocab),
              ("spec.model.initCheckpoint", spec.model.init_checkpoint), ("spec.output.uri", spec.output.uri)]
    for field_path, uri in inputs:
        if not uri or not is_pvc(uri):
            continue
        local = Path(volumes.local_uri(uri))
        _inside_annotated(field_path, uri, local, volumes)
        if field_path == "spec.output.uri":
            continue  # made as needed
        if local.exists() or (field_path.endswith("initCheckpoint") and any(local.parent.glob(local.name + ".*"))):
            continue  # a TF1 checkpoint is a prefix: bert_model.ckpt names bert_model.ckpt.index and .data-*
        claim = PvcRef.parse(uri).claim
        where = volumes.sources.get(claim, f"the default folder for claim {claim} (set it with --volume {claim}=DIR)")
        raise LocalSetupError(f"{field_path}: {uri} is {local} locally ({where}), which does not exist")


__all__ = ["CLAIM_ANNOTATION_PREFIX", "LocalSetupError", "VolumeMap", "annotated_folder", "check_inputs", "claim_annotations",
           "to_local", "volume_map"]
