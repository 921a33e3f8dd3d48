"""One BertTrainingJob's successive states from a watch: what `wait` and `watch` react to.

A watch without a resourceVersion starts with the object's current state (the API server's synthetic ADDED), so
no change between a first read and the watch can be missed; when the server ends a watch (its timeoutSeconds, a
restart), the next one starts from the current state again. The name is also checked here: a field selector is a
request, and the updates of other jobs must never be taken for this one's.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from ..api.presets import API_GROUP, API_VERSION, PLURAL
from .client import PluginError, Target, api_errors, get_job, job_path

#: Longest single watch request: the server closes it after this, and a new one starts from the current state.
WATCH_SECONDS = 300


def job_states(target: Target, name: str, deadline: float | None) -> Iterator[dict[str, Any] | None]:
    """Each state of job `name`: first as read now, then as the watch delivers them; None once `deadline`
    (time.monotonic()) has passed.

    Raises PluginError for API failures and for a job that does not exist or is deleted.
    """
    import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none
    import urllib3  # noqa: PLC0415 - kubernetes' transport, there with it

    namespace = target.namespace or "default"
    yield get_job(target, name)  # at once, and a job that does not exist is said by name
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            yield None
            return
        seconds = WATCH_SECONDS if left is None else max(1, min(WATCH_SECONDS, int(left) + 1))
        watch = kubernetes.watch.Watch()
        seen = False
        with api_errors(target, f"watching BertTrainingJob {job_path(namespace, name)}"):
            try:
                stream = watch.stream(
                    target.custom.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL,
                    field_selector=f"metadata.name={name}", timeout_seconds=seconds,
                    # The client's read timeout ends a quiet watch at the deadline even if the server keeps it open.
                    _request_timeout=(10, max(0.2, min(seconds, left if left is not None else seconds))))
                for event in stream:
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise PluginError(f"watching {job_path(namespace, name)}: {obj.get('message') or obj}")
                    if (obj.get("metadata") or {}).get("name") != name:
                        continue
                    if event.get("type") == "DELETED":
                        raise PluginError(f"BertTrainingJob {job_path(namespace, name)} was deleted")
                    seen = True
                    yield obj
                    if deadline is not None and time.monotonic() >= deadline:
                        yield None
                        return
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                pass  # the read timeout, or the server closed the stream: the deadline is checked at the top
            finally:
                watch.stop()
        if not seen:
            get_job(target, name)  # a watch that ended without the job in it: deleted in between?
