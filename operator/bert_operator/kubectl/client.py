"""The plugin's one way to a cluster: kubeconfig, context and namespace resolved as kubectl resolves them.

Kept apart from the operator's `kube.load_config` on purpose: the operator prefers its pod's service account
and retries transient faults for a reconcile loop; a person at a terminal uses their kubeconfig, wants the
context's namespace by default, and wants one clear line at the first failure (no retries, no traceback).
Every API failure becomes a :class:`PluginError` here, so each command only says what it was trying to do.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from ..api.presets import API_GROUP, API_VERSION, KIND, PLURAL

EXIT_OK = 0
#: The job failed, a wait timed out, the API refused or could not be reached, the thing asked for is not there.
EXIT_FAILED = 1
#: Bad input: an option's value, a context or a stage that does not exist.
EXIT_BAD_INPUT = 2


class PluginError(Exception):
    """One line for the user, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def default_kubeconfig() -> str:
    """KUBECONFIG (one path or several, joined by the OS's path separator), else ~/.kube/config: read at call time,
    not when the kubernetes package was imported."""
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


@dataclass
class Target:
    """A connected API client and the namespace the command acts in (None: all namespaces)."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str | None
    context: str
    server: str

    @property
    def custom(self) -> Any:
        import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none

        return kubernetes.client.CustomObjectsApi(self.api)

    @property
    def core(self) -> Any:
        import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none

        return kubernetes.client.CoreV1Api(self.api)


def connect(kubeconfig: str | None, context: str | None, namespace: str | None, all_namespaces: bool = False,
            user_agent: str = "kubectl-bertjob") -> Target:
    """A client for `context` (default: the kubeconfig's current context) in `namespace` (default: the context's
    namespace, else `default`), or for all namespaces."""
    try:
        import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none
    except ImportError:
        raise PluginError("the kubernetes client is not installed: pip install 'bert-operator[operator]'") from None
    config_file = kubeconfig or default_kubeconfig()
    if not any(os.path.exists(os.path.expanduser(path)) for path in config_file.split(os.pathsep) if path):
        source = "--kubeconfig" if kubeconfig else "KUBECONFIG" if os.environ.get("KUBECONFIG") else "~/.kube/config"
        raise PluginError(f"{source}: no kubeconfig file at {config_file} (set KUBECONFIG or pass --kubeconfig)")
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=config_file)
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise PluginError(f"--kubeconfig {config_file}: {_config_problem(exc)}") from None
    names = [item.get("name") for item in contexts or []]
    if context is not None and context not in names:
        raise PluginError(f"--context: no context {context!r} in {config_file}; it has: {', '.join(names) or 'none'}",
                          EXIT_BAD_INPUT)
    chosen = next((item for item in contexts if item.get("name") == context), None) if context else current
    if not chosen:
        raise PluginError(f"--kubeconfig {config_file}: no current-context; pass --context (one of: {', '.join(names)})",
                          EXIT_BAD_INPUT)
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(config_file=config_file, context=chosen["name"],
                                           client_configuration=configuration, persist_config=False)
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        raise PluginError(f"--kubeconfig {config_file}: context {chosen['name']!r}: {_config_problem(exc)}") from None
    # One attempt: a refused connection is reported at once, not after urllib3's three retries.
    configuration.retries = False
    api = kubernetes.client.ApiClient(configuration)
    api.user_agent = user_agent
    if all_namespaces:
        chosen_namespace = None
    else:
        chosen_namespace = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return Target(api=api, namespace=chosen_namespace, context=chosen["name"], server=configuration.host)


def _config_problem(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextmanager
def api_errors(target: Target, doing: str) -> Iterator[None]:
    """API and connection failures while `doing` something, as one PluginError line each.

    401/403 name the context (whose credentials were refused or lack the permission); the server's message says
    which verb and resource. Nothing of the request (its headers carry the token) is ever part of the message.
    """
    import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none
    import urllib3  # noqa: PLC0415 - kubernetes' transport, there with it

    from ..kube import api_message  # noqa: PLC0415 - imports kubernetes

    try:
        yield
    except kubernetes.client.ApiException as exc:
        if exc.status == 401:
            raise PluginError(f"{doing}: Unauthorized (401): context {target.context!r}'s credentials were refused; "
                              f"log in again") from None
        if exc.status == 403:
            raise PluginError(f"{doing}: Forbidden (403): {api_message(exc)}") from None
        if exc.status == 404:
            raise PluginError(f"{doing}: not found (404): {api_message(exc)}") from None
        status = f"HTTP {exc.status}" if exc.status else "no answer"
        raise PluginError(f"{doing}: {status}: {api_message(exc)}") from None
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        text = str(reason)
        if "Connection refused" in text or "NewConnectionError" in type(reason).__name__:
            text = "connection refused"
        raise PluginError(f"{doing}: cannot reach the API server at {target.server} (context {target.context!r}): "
                          f"{text.splitlines()[0] if text else type(exc).__name__}") from None


def job_path(namespace: str, name: str) -> str:
    """How messages name a job: `namespace/name`, as kubectl prints objects."""
    return f"{namespace}/{name}"


def get_job(target: Target, name: str) -> dict[str, Any]:
    """The BertTrainingJob `name` in the target's namespace; PluginError (exit 1) naming it when there is none."""
    import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none

    namespace = target.namespace or "default"
    with api_errors(target, f"reading BertTrainingJob {job_path(namespace, name)}"):
        try:
            answer = target.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name,
                                                                _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                raise PluginError(f"no {KIND} {name!r} in namespace {namespace!r}") from None
            raise
        return json.loads(answer.data)


def list_jobs(target: Target) -> list[dict[str, Any]]:
    """The BertTrainingJobs of the target's namespace, or of all namespaces."""
    import kubernetes  # noqa: PLC0415 - kubernetes is the [operator] extra: the base install's CLI has none

    where = f"namespace {target.namespace!r}" if target.namespace else "all namespaces"
    with api_errors(target, f"listing BertTrainingJobs in {where}"):
        try:
            answer = _list(target)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                raise PluginError(f"listing BertTrainingJobs: the API server at {target.server} has no {KIND} "
                                  f"resource: is bert-operator's CRD installed?") from None
            raise
        return list(json.loads(answer.data).get("items") or [])


def _list(target: Target) -> Any:
    if target.namespace:
        return target.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, target.namespace, PLURAL,
                                                           _preload_content=False)
    return target.custom.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, _preload_content=False)
