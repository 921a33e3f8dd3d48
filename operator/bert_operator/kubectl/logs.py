"""`kubectl bertjob logs`: the launcher pod's log of one stage, where mpirun gathers every rank's output.

The pod is found by labels, not by name (the MPI Operator names the launcher through a batch Job, with a random
suffix): the renderer puts `bertoperator.io/job-name` and `bertoperator.io/stage` on every pod template of a
stage, and the MPI Operator adds `training.kubeflow.org/job-role=launcher` to the launcher's. While a stage
restarts, the failed launcher may still be there beside the new one: the newest is the one shown. The log is the
tenant's program's output: it passes through terminal.EscapingWriter, so lines and tabs stay and escape sequences
are shown, not acted on.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bert_common.contract import JOB_NAME_LABEL, STAGE_LABEL
from ..terminal import ByteSink, EscapingWriter
from ..untrusted import mapping, records, text
from .client import EXIT_BAD_INPUT, EXIT_OK, PluginError, Target, api_errors, get_job, job_path

#: The MPI Operator's role label (worker or launcher) and the launcher's container name in the rendered MPIJob.
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
LAUNCHER_ROLE = "launcher"
LAUNCHER_CONTAINER = "launcher"


def pick_stage(job: dict[str, Any], asked: str | None) -> dict[str, Any]:
    """The stage whose logs to show: the one asked for, else the current one, else the last one started."""
    status = mapping(job.get("status"))
    stages = [stage for stage in records(status.get("stages")) if text(stage.get("name"))]
    name = mapping(job.get("metadata")).get("name")
    phase = text(status.get("phase")) or "Pending"
    if asked is not None:
        chosen = next((s for s in stages if s.get("name") == asked), None)
        if chosen is None:
            known = ", ".join(s["name"] for s in stages) or "none yet"
            raise PluginError(f"--stage: job {name} has no stage {asked!r}; its stages: {known}", EXIT_BAD_INPUT)
        return chosen
    if not stages:
        raise PluginError(f"job {name} has no stage yet (phase {phase}): no logs to show")
    current = status.get("currentStage")
    return next((s for s in stages if s.get("name") == current), stages[-1])


def launcher_pod(target: Target, job: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """The newest launcher pod of `stage`; PluginError (exit 1) saying the phases when there is none yet."""
    meta = job.get("metadata") or {}
    namespace, name = meta.get("namespace") or target.namespace or "default", meta.get("name")
    selector = f"{JOB_NAME_LABEL}={name},{STAGE_LABEL}={stage['name']},{JOB_ROLE_LABEL}={LAUNCHER_ROLE}"
    with api_errors(target, f"listing the launcher pods of {job_path(namespace, str(name))}"):
        answer = target.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        pods = json.loads(answer.data).get("items") or []
    if not pods:
        raise PluginError(f"no launcher pod for stage {stage['name']} of job {name} yet (stage phase "
                          f"{stage.get('phase') or 'Pending'}, job phase {(job.get('status') or {}).get('phase') or 'Pending'})")
    return max(pods, key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp") or ""))


def stream_logs(target: Target, pod: dict[str, Any], follow: bool, tail: int | None, out: ByteSink) -> None:
    """Copy the launcher container's log to `out` as it arrives (with `follow`, until the container ends)."""
    import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none

    from ..kube import api_message  # noqa: PLC0415 - imports kubernetes

    meta = pod["metadata"]
    with api_errors(target, f"reading the log of pod {job_path(meta['namespace'], meta['name'])}"):
        try:
            response = target.core.read_namespaced_pod_log(
                meta["name"], meta["namespace"], container=LAUNCHER_CONTAINER, follow=follow,
                tail_lines=tail, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 400:  # e.g. the container is still waiting to start
                raise PluginError(f"pod {meta['name']}: {api_message(exc)}") from None
            raise
        try:
            for chunk in response.stream(amt=None, decode_content=True) if follow else [response.data]:
                if chunk:
                    out.write(chunk)
                    out.flush()
        finally:
            response.release_conn()


def run(target: Target, name: str, stage: str | None, follow: bool, tail: int | None) -> int:
    if tail is not None and tail < 0:
        raise PluginError(f"--tail: must be 0 or more lines, got {tail}", EXIT_BAD_INPUT)
    job = get_job(target, name)
    pod = launcher_pod(target, job, pick_stage(job, stage))
    out: ByteSink | None = getattr(sys.stdout, "buffer", None)
    sys.stdout.flush()
    writer = EscapingWriter(out if out is not None else _TextOut(sys.stdout))
    try:
        stream_logs(target, pod, follow, tail, writer)
    finally:
        writer.close()
    return EXIT_OK


class _TextOut:
    """A text stream (one without a byte buffer, e.g. a test's) written to as bytes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8", errors="replace"))

    def flush(self) -> None:
        self.stream.flush()
