"""A rendered MPIJob's containers as local command lines.

The command lines are taken from the MPIJob the operator would create, not
rebuilt: the only changes are the ones a pod's runtime makes for it (mount
paths bound to folders, Secret references resolved, the image's `python`
being this interpreter, Open MPI allowed to run as root when this process
is root) and, for one process, running the rank directly instead of through
mpirun. So a local run tests exactly what a cluster runs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..render.command import LAUNCH_TASK, TRAINER_ENTRY
from .volumes import to_local

#: Container variables that the user's environment overrides (name -> the local variables that win):
#: the in-cluster object-store endpoint (e.g. minio.minio.svc) rarely resolves from a laptop.
ENVIRONMENT_WINS = {
    "AWS_ENDPOINT_URL_S3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "AWS_DEFAULT_REGION": ("AWS_DEFAULT_REGION",),
}


#: Open MPI's consent to run as root (both are required), set for local runs as root only.
ROOT_ALLOWED_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def s3_endpoint(spec_endpoint: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The object-store endpoint a local process uses: the environment's, else the spec's."""
    environ = os.environ if environ is None else environ
    return next((environ[name] for name in ENVIRONMENT_WINS["AWS_ENDPOINT_URL_S3"] if environ.get(name)), spec_endpoint)


@dataclass(frozen=True)
class LocalCommand:
    """One process to run: what it is (init container or launcher), its argv and environment."""

    role: str
    argv: list[str]
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _pod(mpijob: dict[str, Any], replica: str) -> dict[str, Any]:
    return mpijob["spec"]["mpiReplicaSpecs"][replica]["template"]["spec"]


def container_env(container: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The process environment: ours, plus the container's values; Secret keys must come from ours.

    Raises ValueError naming the variable and the Secret when a secretKeyRef has no local value.
    """
    env = dict(environ)
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            if any(environ.get(local) for local in ENVIRONMENT_WINS.get(name, ())):
                continue
            env[name] = str(item["value"])
            continue
        secret = ((item.get("valueFrom") or {}).get("secretKeyRef") or {})
        if name not in environ:
            raise ValueError(
                f"{name}: on a cluster it comes from Secret {secret.get('name')!r} (key {secret.get('key')!r}); "
                f"set {name} in the environment for a local run"
            )
    return env


def without_wait(command: list[str]) -> list[str]:
    """The launcher's command without its `python -m bert_trainer launch ... --` prefix: it waits for worker pods'
    sshd, and a local run has no worker pods (its ranks start on this machine)."""
    prefix = [*TRAINER_ENTRY, LAUNCH_TASK]
    if command[:len(prefix)] == prefix and "--" in command:
        return command[command.index("--") + 1:]
    return command


def python_argv(command: list[str]) -> tuple[list[str], list[str]]:
    """Split `[...mpirun flags..., python, -m, bert_trainer, ...]` at the interpreter (render's TRAINER_ENTRY)."""
    width = len(TRAINER_ENTRY)
    for index in range(len(command) - width + 1):
        if tuple(command[index:index + width]) == TRAINER_ENTRY:
            return command[:index], command[index + 1:]
    raise ValueError(f"no {' '.join(TRAINER_ENTRY)!r} in the command {' '.join(command)!r}")


def _this_python(rank_args: list[str]) -> list[str]:
    return [sys.executable, *rank_args]


#: The containers the operator renders; any other one is a job template's (a sidecar, an init container).
OPERATOR_CONTAINERS = ("launcher", "worker", "sync-dataset")
#: Resources a local run stands in for (the GPUs are this machine's, or none); any other extended resource is a device.
LOCAL_RESOURCES = ("cpu", "memory", "ephemeral-storage", "nvidia.com/gpu")


def ignored_locally(mpijob: dict[str, Any]) -> list[str]:
    """What of a job template's additions a local run does not do, one note each: its containers (sidecars, init
    containers) do not run, its device and hugepage requests are not made. What it does: the launcher's environment
    (the ranks get it) and its claims' folders (volumes.py)."""
    notes = []
    for replica in mpijob["spec"]["mpiReplicaSpecs"]:
        pod = _pod(mpijob, replica)
        for kind in ("initContainers", "containers"):
            for container in pod.get(kind) or []:
                if container.get("name") not in OPERATOR_CONTAINERS:
                    notes.append(f"not run locally: {replica} {kind[:-1]} {container.get('name')!r} (a job template's)")
                    continue
                for resource in sorted(((container.get("resources") or {}).get("limits") or {})):
                    if resource not in LOCAL_RESOURCES:  # (an extended resource is always in limits)
                        notes.append(f"not requested locally: {resource} on the {replica} container "
                                     f"{container.get('name')!r} (a device a job template asks for)")
    return notes


def sync_commands(mpijob: dict[str, Any], mounts: list[tuple[str, Path]],
                  environ: Mapping[str, str] | None = None) -> list[LocalCommand]:
    """The worker's init containers the operator renders (the dataset sync), once: every local rank shares one folder.
    A job template's init containers do not run here (ignored_locally says so)."""
    return [container_command(container, mounts, environ, role=f"init:{container['name']}")
            for container in _pod(mpijob, "Worker").get("initContainers") or []
            if container.get("name") in OPERATOR_CONTAINERS]


def container_command(container: dict[str, Any], mounts: list[tuple[str, Path]],
                      environ: Mapping[str, str] | None = None, *, role: str | None = None) -> LocalCommand:
    """A container whose command runs the trainer (`python -m bert_trainer ...`: an init container's sync, a sweep's
    cleanup Job) as one local process, its paths bound to folders."""
    environ = os.environ if environ is None else environ
    _, rank_args = python_argv(container["command"])
    argv = _this_python([to_local(arg, mounts) for arg in rank_args])
    return LocalCommand(role or container["name"], argv, container_env(container, environ))


def horovod_installed() -> bool:
    return importlib.util.find_spec("horovod") is not None


def launcher_command(mpijob: dict[str, Any], mounts: list[tuple[str, Path]], processes: int | None = None,
                     environ: Mapping[str, str] | None = None) -> LocalCommand:
    """The launcher's mpirun line on localhost, or the rank's own command when one process runs.

    `processes` overrides mpirun's -np (a laptop rarely has the job's GPUs).
    """
    environ = os.environ if environ is None else environ
    container = _pod(mpijob, "Launcher")["containers"][0]
    mpirun, rank_args = python_argv(without_wait(container["command"]))
    rank_args = [to_local(arg, mounts) for arg in rank_args]
    env = container_env(container, environ)
    np_index = mpirun.index("-np") + 1
    count = processes or int(mpirun[np_index])
    notes: list[str] = []
    if count == 1:
        if "--horovod" in rank_args and not horovod_installed():
            rank_args = [arg for arg in rank_args if arg != "--horovod"]
            notes.append("Horovod is not installed: one process runs without --horovod (identical for one rank)")
        return LocalCommand("launcher", _this_python(rank_args), env, notes)
    if shutil.which(mpirun[0], path=env.get("PATH")) is None:
        raise ValueError(f"{count} processes need {mpirun[0]} (Open MPI) on PATH; install it "
                         "(bash scripts/bootstrap.sh trainer does) or run with --processes 1")
    if not horovod_installed():
        raise ValueError(f"{count} processes need Horovod; build it with bash scripts/bootstrap.sh trainer, "
                         "or run with --processes 1")
    mpirun = [*mpirun]
    mpirun[np_index] = str(count)
    # Local cores rarely match the job's slots; ranks share this machine's cores.
    mpirun.insert(1, "--oversubscribe")
    if os.geteuid() == 0:
        # The pods run as the image's user, so the rendered mpirun has no --allow-run-as-root; here (a CI
        # container, a root shell) Open MPI would refuse to start. Its own variables allow root for this run only.
        env.update(ROOT_ALLOWED_ENV)
        notes.append("running as root: Open MPI allowed to with OMPI_ALLOW_RUN_AS_ROOT (the cluster's pods run as a user)")
    return LocalCommand("launcher", [*mpirun, *_this_python(rank_args)], env, notes)
