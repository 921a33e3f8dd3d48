"""What reconciling needs of the world, as protocols: a cluster API and a place for Events.

The operator plugs in the API server (``kube.KubeApi``, ``events.EventRecorder``),
a local run plugs in processes (``local.LocalStages``, ``local.Display``), and
the unit tests plug in a recording fake.
"""

from __future__ import annotations

from typing import Any, Protocol


class Rejected(Exception):
    """The API server refused an object itself (400/422: its schema or an admission webhook said no).

    Sending the same object again cannot succeed, so the reconciler fails the job with
    the server's message instead of retrying.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NamespaceTerminating(Exception):
    """The API server refused a create because the job's namespace is being deleted (403, cause NamespaceTerminating).

    Not a fault: the namespace controller is removing the job and everything of it. The reconciler writes nothing
    more for the job (no status, no Event) and says so only at debug level."""

    def __init__(self, namespace: str) -> None:
        super().__init__(f"namespace {namespace} is being terminated")
        self.namespace = namespace


class ReadFailed(Exception):
    """A read whose answer only adds detail to a status (a failed stage's pods, a queued stage's Workload, the Warning
    Events of a waiting one) got an error answer or none (RBAC, 5xx, the connection). The plan goes on without the
    detail. Only this is forgiven: any other exception out of a port is a bug, and propagates."""


class MPIJobApi(Protocol):
    """The reconciler's only API calls: read, create, patch and delete MPIJobs; read a failed stage's pods; read and
    patch a queued stage's Kueue Workload; a served job's InferenceService; a sweep's cleanup Job; merge a job's
    status."""

    def get_mpijob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the MPIJob, whether it was created now); raises Rejected when the server refuses it."""
    def patch_mpijob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def delete_mpijob(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        """Delete the MPIJob of that uid, its dependents (pods) first; the MPIJob while they go, None once gone."""
    def list_stage_pods(self, namespace: str, job: str, stage: str) -> list[dict[str, Any]]:
        """The pods of one stage of a job (by the labels the renderer puts on them); ReadFailed when unreadable."""
    def find_workload(self, namespace: str, mpijob_uid: str) -> dict[str, Any] | None:
        """The Kueue Workload of an MPIJob (by Kueue's job-uid label); None if there is none; KueueNotInstalled when
        the Workload API is not served; ReadFailed when unreadable."""
    def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None: ...
    def list_warning_events(self, namespace: str) -> list[dict[str, Any]]:
        """Warning Events of a namespace (involvedObject, reason, message, times), as the API serves them; ReadFailed
        when unreadable."""
    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A KServe InferenceService; None if there is none (or KServe's API is not served); ReadFailed when
        unreadable."""
    def create_inference_service(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the InferenceService, whether it was created now: a 409 answers the existing one); Rejected when the
        server refuses it (404: KServe's API is not served)."""
    def patch_inference_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch it; Rejected when the server refuses the patch."""
    def delete_inference_service(self, namespace: str, name: str, uid: str) -> None:
        """Delete the InferenceService of that uid (gone already, or another uid by now: nothing)."""
    def get_batch_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A batch/v1 Job (a sweep's cleanup); None if there is none; ReadFailed when unreadable."""
    def create_batch_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the Job, whether it was created now: a 409 answers the existing one); Rejected when the server refuses
        it (schema, admission such as PodSecurity)."""


class EventSink(Protocol):
    """Where Kubernetes Events go (the API server in production, a list in unit tests)."""

    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None: ...
