"""Job templates with the real operator process against the strict emulated API: the platform's ConfigMaps (the
operator's own namespace only) reach the MPIJobs a policy forces them on, a changed ConfigMap makes the next MPIJob
without a restart and leaves the running one, a job waiting for a template goes on when it appears, and a tenant's
labelled ConfigMap is never taken for the platform's."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from tests.conftest import REPO
from tests.operator.cluster import EmulatedCluster, OperatorProcess, mpijob_crd_object, strict_cluster

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
TEMPLATES = REPO / "examples" / "templates"
TEAM, PLATFORM = "team-a", "bert-operator"
LABEL = {"bertoperator.io/team": "team-a"}
POLICY = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "team-a"},
          "spec": {"namespaceSelector": {"matchLabels": LABEL},
                   "templates": {"forced": ["efa"], "allowed": ["istio-off"]}}}


def template_configmap(name: str, text: str, namespace: str = PLATFORM) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"template-{name}", "namespace": namespace,
                         "labels": {"bertoperator.io/job-template": name}},
            "data": {"template.yaml": text}}


def squad(name: str, **spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(SQUAD)
    document["metadata"] = {"name": name, "namespace": TEAM}
    document["spec"]["output"]["uri"] = f"s3://bert-results/{TEAM}/{name}"
    document["spec"].update(spec)
    return document


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatedCluster, Any]]:
    workdir: Path = tmp_path_factory.mktemp("templates")
    with strict_cluster(workdir, namespaces={TEAM: LABEL, PLATFORM: {}}, policies=True) as running:
        running.custom.create_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingpolicies", POLICY)
        # The MPI Operator's CRD as the API server serves it: the operator checks templated MPIJobs against it.
        running.custom.create_cluster_custom_object("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                                    mpijob_crd_object())
        core = kubernetes.client.CoreV1Api(running.client)
        with OperatorProcess(running, resync_seconds=1.0, env={"BERTOP_TEMPLATES_NAMESPACE": PLATFORM}):
            yield running, core


def offer(running: EmulatedCluster, core: Any, name: str, text: str) -> None:
    """The platform adds template `name` and a policy allows it to team-a."""
    core.create_namespaced_config_map(PLATFORM, template_configmap(name, text))
    policy = copy.deepcopy(POLICY)
    policy["metadata"]["name"] = f"team-a-{name}"
    policy["spec"]["templates"] = {"allowed": [name]}
    running.custom.create_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingpolicies", policy)


def worker_limits(mpijob: dict[str, Any]) -> dict[str, Any]:
    return mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def mpijob(cluster: EmulatedCluster, name: str) -> dict[str, Any] | None:
    return next((m for m in cluster.mpijobs(TEAM) if m["metadata"]["name"] == name), None)


def test_templates_from_the_platforms_configmaps_reach_the_next_mpijob_without_a_restart(cluster) -> None:
    running, core = cluster
    status = lambda name: running.job(TEAM, name).get("status") or {}  # noqa: E731
    # A tenant's own labelled ConfigMap is not the platform's: the forced template is still missing.
    core.create_namespaced_config_map(TEAM, template_configmap("efa", (TEMPLATES / "efa.yaml").read_text(), TEAM))
    running.apply_job(squad("first"), uid="uid-first")
    running.wait(lambda: any(c.get("reason") == "TemplateUnavailable" for c in status("first").get("conditions") or []),
                 what="the job waiting for its template")
    assert mpijob(running, "first-squad") is None
    # The platform adds it: the waiting job goes on, with it.
    core.create_namespaced_config_map(PLATFORM, template_configmap("efa", (TEMPLATES / "efa.yaml").read_text()))
    running.wait(lambda: mpijob(running, "first-squad") is not None, what="first-squad")
    first = mpijob(running, "first-squad")
    assert worker_limits(first)["vpc.amazonaws.com/efa"] == 4
    assert first["metadata"]["annotations"]["bertoperator.io/templates"] == "efa@1"
    running.wait(lambda: (status("first").get("stages") or [{}])[0].get("templates") == ["efa@1"], what="recorded")
    # The platform rolls out version 2: the next MPIJob has it; the one made before is left as it was.
    newer = (TEMPLATES / "efa.yaml").read_text().replace('version: "1"', 'version: "2"').replace(
        "efaPerWorker: 4", "efaPerWorker: 32")
    core.patch_namespaced_config_map("template-efa", PLATFORM, {"data": {"template.yaml": newer}})
    running.apply_job(squad("second", templates=["istio-off"]), uid="uid-second")
    core.create_namespaced_config_map(PLATFORM, template_configmap("istio-off", (TEMPLATES / "istio-off.yaml").read_text()))
    running.wait(lambda: mpijob(running, "second-squad") is not None, what="second-squad")
    second = mpijob(running, "second-squad")
    assert worker_limits(second)["vpc.amazonaws.com/efa"] == 32
    assert second["metadata"]["annotations"]["bertoperator.io/templates"] == "efa@2,istio-off@1"
    assert worker_limits(mpijob(running, "first-squad"))["vpc.amazonaws.com/efa"] == 4


def test_a_template_that_breaks_pod_security_fails_the_job_and_creates_nothing(cluster) -> None:
    running, core = cluster
    status = lambda name: running.job(TEAM, name).get("status") or {}  # noqa: E731
    offer(running, core, "infiniband", (TEMPLATES / "infiniband.yaml").read_text().replace("ipcLock: false", "ipcLock: true"))
    running.apply_job(squad("locked", templates=["infiniband"]), uid="uid-locked")
    running.wait(lambda: status("locked").get("phase") == "Failed", what="Failed")
    failed = next(c for c in status("locked")["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "TemplateInvalid" and "template infiniband, line 28" in failed["message"]
    assert mpijob(running, "locked-squad") is None


def test_a_template_the_clusters_mpijob_crd_refuses_fails_the_job_naming_its_line_and_creates_nothing(cluster) -> None:
    """A field the MPIJob CRD does not declare would be dropped by the API server without a word (a typo in a
    platform's template): the operator checks against the CRD it read from the cluster and says so instead."""
    running, core = cluster
    status = lambda name: running.job(TEAM, name).get("status") or {}  # noqa: E731
    offer(running, core, "backoff", 'name: backoff\nversion: "1"\npatch: |\n  spec:\n    runPolicy:\n      backofLimit: 3\n')
    running.apply_job(squad("typo", templates=["backoff"]), uid="uid-typo")
    running.wait(lambda: status("typo").get("phase") == "Failed", what="Failed")
    failed = next(c for c in status("typo")["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "TemplateInvalid"
    assert ("template backoff, line 6 (patch line 3): spec.runPolicy.backofLimit: 'backofLimit' is not a field of "
            "MPIJob v2beta1 here: the API server would drop it (did you mean 'backoffLimit'?)") in failed["message"]
    assert mpijob(running, "typo-squad") is None


def test_the_operator_reads_configmaps_only_as_the_charts_templates_role_grants(cluster) -> None:
    """RBAC from what the operator did: its ConfigMap requests are the verbs the chart's templates Role grants, all in
    the templates namespace (the tenant's labelled ConfigMap above was never read)."""
    from tests.chart.render import kind, objects, one
    from tests.chart.test_operator_access import OPERATOR_AGENTS, granted, used_verbs

    running, _ = cluster

    async def recorded() -> list[Any]:
        return list(running.emulator._requests)

    requests = [r for r in running.call(recorded) if str((r.headers or {}).get("User-Agent", "")).startswith(OPERATOR_AGENTS)
                and r.resource is not None and r.resource.plural == "configmaps"]
    assert requests and {r.namespace for r in requests} == {PLATFORM}
    [role] = [r for r in kind(objects(), "Role") if r["metadata"]["name"] == "bert-operator-templates"]
    assert used_verbs(requests) == granted(role["rules"]) == {("", "configmaps", "list"), ("", "configmaps", "watch")}
    # The MPIJob CRD is read by name through the CRD list the ClusterRole already grants (kopf lists CRDs).
    crd_reads = [r for r in running.call(recorded) if str((r.headers or {}).get("User-Agent", "")).startswith("bert-operator/")
                 and r.resource is not None and r.resource.plural == "customresourcedefinitions"]
    assert crd_reads and used_verbs(crd_reads) == {("apiextensions.k8s.io", "customresourcedefinitions", "list")}
    assert used_verbs(crd_reads) <= granted(one(objects(), "ClusterRole")["rules"])
