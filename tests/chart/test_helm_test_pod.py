"""The `helm test` Pod: rendered by Helm's engine, valid, a test hook, calling the Service the chart renders, and
its script run against the real `bertjob operator` (passes while it serves, fails when nothing answers)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from tests.chart.render import kind, objects, render
from tests.conftest import free_port
from tests.operator.cluster import EmulatedCluster, OperatorProcess
from bert_operator.pod_security import restricted
from tests.schemas import object_errors

TEMPLATE = "bert-operator/templates/tests/test-operator-answers.yaml"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "other-ports": {"progress": {"port": 18081}, "metrics": {"port": 19090}},
    "metrics-off": {"metrics": {"enabled": False}},
    "progress-tls": {"webhook": {"enabled": True}, "progress": {"tls": True}},
    "helm-certs-tls": {"webhook": {"enabled": True, "certificates": "helm"}, "progress": {"tls": True}},
}


def test_pod(values: dict[str, Any], namespace: str = "bert-operator") -> dict[str, Any]:
    [pod] = [obj for obj in objects(values, namespace) if obj["kind"] == "Pod"]
    return pod


test_pod.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def env(pod: dict[str, Any]) -> dict[str, str]:
    [container] = pod["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_pod_is_a_test_hook_kubernetes_accepts_and_restricted_admits(name: str) -> None:
    pod = test_pod(VALUE_SETS[name])
    assert object_errors(pod) == [], name
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}
    assert restricted(pod["spec"], annotations) == []
    [container] = pod["spec"]["containers"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["automountServiceAccountToken"] is False


def test_the_pod_runs_the_operator_image_and_the_service_never_selects_it() -> None:
    found = objects({})
    [deployment] = kind(found, "Deployment")
    [service] = kind(found, "Service")
    pod = test_pod({})
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    [container] = pod["spec"]["containers"]
    assert container["image"] == operator["image"] and container["command"][0] == "python"
    selector = service["spec"]["selector"].items()
    assert not selector <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
@pytest.mark.parametrize("namespace", ["bert-operator", "platform"])
def test_the_urls_name_the_rendered_service_and_its_ports(name: str, namespace: str) -> None:
    values = VALUE_SETS[name]
    found = objects(values, namespace)
    [service] = kind(found, "Service")
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    urls = env(test_pod(values, namespace))
    progress = urlsplit(urls["PROGRESS_URL"])
    assert (progress.hostname, progress.port) == (host, ports["progress"])
    assert progress.path.startswith(f"/progress/{namespace}/")
    tls = (values.get("progress") or {}).get("tls", False)
    assert progress.scheme == ("https" if tls else "http")
    if "metrics" in ports:
        metrics = urlsplit(urls["METRICS_URL"])
        assert (metrics.scheme, metrics.hostname, metrics.port, metrics.path) == ("http", host, ports["metrics"], "/metrics")
    else:
        assert "METRICS_URL" not in urls


@pytest.mark.parametrize("name", ["progress-tls", "helm-certs-tls"])
def test_over_tls_the_pod_verifies_with_the_webhook_secrets_ca(name: str) -> None:
    found = objects(VALUE_SETS[name])
    [deployment] = kind(found, "Deployment")
    pod = test_pod(VALUE_SETS[name])
    secret = {v["name"]: v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
              if "secret" in v}["webhook-tls"]
    [volume] = pod["spec"]["volumes"]
    [mount] = pod["spec"]["containers"][0]["volumeMounts"]
    assert volume["secret"]["secretName"] == secret and mount["name"] == volume["name"]
    assert env(pod)["CA_DIR"] == mount["mountPath"]


def test_install_yaml_leaves_the_test_pod_out() -> None:
    from tests.conftest import REPO

    assert TEMPLATE in render({})
    assert "kind: Pod\n" not in (REPO / "manifests" / "install.yaml").read_text()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(tmp_path_factory.mktemp("kmock")) as running:
        yield running


def run_script(pod: dict[str, Any], progress_port: int, metrics_port: int | None, timeout: str) -> subprocess.CompletedProcess:
    """The Pod's command with this interpreter, its Service URLs pointed at 127.0.0.1 and the given ports."""
    [container] = pod["spec"]["containers"]
    urls = env(pod)
    local = {"PROGRESS_URL": urlsplit(urls["PROGRESS_URL"])._replace(netloc=f"127.0.0.1:{progress_port}").geturl(),
             "TIMEOUT_SECONDS": timeout}
    if metrics_port is not None:
        local["METRICS_URL"] = urlsplit(urls["METRICS_URL"])._replace(netloc=f"127.0.0.1:{metrics_port}").geturl()
    return subprocess.run([sys.executable, *container["command"][1:]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **local})


def test_the_script_passes_against_the_real_operator_and_fails_when_nothing_answers(cluster: EmulatedCluster) -> None:
    pod = test_pod({})
    metrics = free_port()
    with OperatorProcess(cluster, "--metrics-port", str(metrics)) as operator:
        passed = run_script(pod, operator.progress_port, metrics, "60")
        assert passed.returncode == 0, passed.stdout + passed.stderr + operator.output()
    assert "progress:" in passed.stdout and "answered 405" in passed.stdout and "metrics:" in passed.stdout
    failed = run_script(pod, free_port(), None, "1")
    assert failed.returncode == 1 and "unreachable" in failed.stderr
