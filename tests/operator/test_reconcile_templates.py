"""The reconciler with the platform's job templates, against the recording fake: a template a policy forces or a job
asks for reaches the MPIJob and status.stages[].templates; a job cannot drop a forced one nor ask for one no policy
offers; an MPIJob the templates break fails the job before anything is created; a missing or broken template holds
only the jobs that need it; a changed template makes the next stage, never the running one."""

from __future__ import annotations

from typing import Any

from bert_operator.reconcile import Reconciler
from bert_operator.templates.catalog import TEMPLATE_KEY, TEMPLATE_LABEL, Catalog
from tests.conftest import REPO
from tests.operator.fakes import GLUE, PRETRAIN, FakeCluster, condition, job, sync
from tests.operator.test_reconcile_policy import Policies, team_policy

TEMPLATES = REPO / "examples" / "templates"


def configmap(name: str, text: str, configmap_name: str | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "bert-operator", "name": configmap_name or f"template-{name}",
                         "labels": {TEMPLATE_LABEL: name}}, "data": {TEMPLATE_KEY: text}}


def catalog(*names: str) -> Catalog:
    made = Catalog()
    for name in names:
        made.configmap_event("ADDED", configmap(name, (TEMPLATES / f"{name}.yaml").read_text()))
    return made


def reconciler_for(cluster: FakeCluster, policies: Policies, templates: Catalog) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: "2026-12-01T10:00:00Z", policies=policies,
                      templates=templates.snapshot)


def worker(mpijob: dict[str, Any]) -> dict[str, Any]:
    return mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]


def test_a_forced_template_and_an_allowed_one_reach_the_mpijob_and_the_stage_records_them(cluster: FakeCluster) -> None:
    policy = team_policy(templates={"forced": ["efa"], "allowed": ["istio-off"]})
    body = job({**GLUE, "templates": ["istio-off", "efa"]})  # efa is forced first, whatever the job's order
    sync(reconciler_for(cluster, Policies(policy), catalog("efa", "istio-off")), body)
    mpijob = cluster.mpijobs["j-glue"]
    pod = worker(mpijob)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["vpc.amazonaws.com/efa"] == 4
    assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert mpijob["metadata"]["annotations"]["bertoperator.io/templates"] == "efa@1,istio-off@1"
    [stage] = body["status"]["stages"]
    assert stage["templates"] == ["efa@1", "istio-off@1"]
    assert {"path": "spec.templates", "value": '["efa"]', "how": "forced", "policy": "team-default"} in \
        body["status"]["policy"]["applied"]


def test_a_job_cannot_ask_for_a_template_no_policy_offers(cluster: FakeCluster) -> None:
    body = job({**GLUE, "templates": ["fluent-bit-sidecar"]})
    sync(reconciler_for(cluster, Policies(team_policy(templates={"allowed": ["istio-off"]})), catalog()), body)
    failed = condition(body["status"], "Failed")
    assert failed["reason"] == "PolicyViolation" and cluster.mpijobs == {}
    assert "spec.templates[0]: template 'fluent-bit-sidecar' is not offered in namespace ml" in failed["message"]
    other = job({**GLUE, "templates": ["istio-off"]}, name="k")  # no policy at all: none is offered
    sync(reconciler_for(cluster, Policies(), catalog("istio-off")), other)
    assert condition(other["status"], "Failed")["reason"] == "InvalidSpec" and cluster.mpijobs == {}


def test_a_template_that_breaks_its_checks_fails_the_job_naming_its_line_and_creates_nothing(cluster: FakeCluster) -> None:
    locked = (TEMPLATES / "infiniband.yaml").read_text().replace("ipcLock: false", "ipcLock: true")
    templates = Catalog()
    templates.configmap_event("ADDED", configmap("infiniband", locked))
    body = job(GLUE)
    sync(reconciler_for(cluster, Policies(team_policy(templates={"forced": ["infiniband"]})), templates), body)
    assert cluster.mpijobs == {} and not any(call[0] == "create" for call in cluster.calls)
    failed = condition(body["status"], "Failed")
    assert failed["reason"] == "TemplateInvalid"
    assert "template infiniband, line 28 (patch line 14)" in failed["message"] and "IPC_LOCK" in failed["message"]
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Warning", "Failed")]
    assert body["status"]["stages"][0]["templates"] == ["infiniband@1"]


def test_a_missing_or_broken_template_holds_only_the_jobs_that_need_it(cluster: FakeCluster) -> None:
    templates = Catalog()
    templates.configmap_event("ADDED", configmap("efa", "name: efa\nversion: '1'\npatch: |\n  spec: {{ nope }\n"))
    policies = Policies(team_policy(templates={"allowed": ["efa", "istio-off"]}))
    reconciler = reconciler_for(cluster, policies, templates)
    needs, other = job({**GLUE, "templates": ["efa", "istio-off"]}), job(GLUE, name="k")
    sync(reconciler, needs)
    sync(reconciler, other)
    assert set(cluster.mpijobs) == {"k-glue"}  # the broken ConfigMap holds only the job that needs it
    ready = condition(needs["status"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TemplateUnavailable")
    assert "template 'efa': ConfigMap bert-operator/template-efa: template efa, line 4" in ready["message"]
    assert "template 'istio-off': no ConfigMap in the operator's namespace has it" in ready["message"]
    assert needs["status"]["phase"] == "Pending"
    # the platform fixes the ConfigMap and adds the other: the job goes on
    templates.configmap_event("MODIFIED", configmap("efa", (TEMPLATES / "efa.yaml").read_text()))
    templates.configmap_event("ADDED", configmap("istio-off", (TEMPLATES / "istio-off.yaml").read_text()))
    sync(reconciler, needs)
    assert cluster.mpijobs["j-glue"]["metadata"]["annotations"]["bertoperator.io/templates"] == "efa@1,istio-off@1"


def test_a_changed_template_makes_the_next_stage_and_leaves_the_running_one(cluster: FakeCluster) -> None:
    templates = catalog("efa")
    reconciler = reconciler_for(cluster, Policies(team_policy(templates={"forced": ["efa"]})), templates)
    body = job(PRETRAIN)
    sync(reconciler, body)
    first = cluster.mpijobs["j-phase1"]
    assert worker(first)["spec"]["containers"][0]["resources"]["limits"]["vpc.amazonaws.com/efa"] == 4
    newer = (TEMPLATES / "efa.yaml").read_text().replace('version: "1"', 'version: "2"').replace(
        "efaPerWorker: 4", "efaPerWorker: 32")
    templates.configmap_event("MODIFIED", configmap("efa", newer))
    cluster.set_conditions("j-phase1", "Created", "Running")
    sync(reconciler, body)
    assert cluster.mpijobs["j-phase1"] == first  # the running stage is never changed
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    second = cluster.mpijobs["j-phase2"]
    assert worker(second)["spec"]["containers"][0]["resources"]["limits"]["vpc.amazonaws.com/efa"] == 32
    assert [s.get("templates") for s in body["status"]["stages"]] == [["efa@1"], ["efa@2"]]


def test_two_configmaps_claiming_one_name_make_it_unavailable_and_a_tenants_label_is_not_read() -> None:
    templates = catalog("efa")
    templates.configmap_event("ADDED", configmap("efa", (TEMPLATES / "efa.yaml").read_text(), "another-efa"))
    got = templates.snapshot()["efa"]
    assert "all claim template 'efa'" in got.reason
    templates.configmap_event("DELETED", configmap("efa", "", "another-efa"))
    assert templates.snapshot()["efa"].ref == "efa@1"
    wrong = Catalog()
    wrong.configmap_event("ADDED", configmap("efa", (TEMPLATES / "istio-off.yaml").read_text()))
    assert "labelled 'efa' but holds template 'istio-off'" in wrong.snapshot()["efa"].reason


def test_a_restarted_stage_is_made_again_with_the_template_versions_it_had(cluster: FakeCluster) -> None:
    """An infrastructure failure deletes the stage's MPIJob and makes it again: with efa@1, though the platform
    rolled out efa@2 meanwhile; a new job gets efa@2."""
    templates = catalog("efa")
    reconciler = reconciler_for(cluster, Policies(team_policy(templates={"forced": ["efa"]})), templates)
    body = job(GLUE)
    sync(reconciler, body)
    newer = (TEMPLATES / "efa.yaml").read_text().replace('version: "1"', 'version: "2"').replace(
        "efaPerWorker: 4", "efaPerWorker: 32")
    templates.configmap_event("MODIFIED", configmap("efa", newer))
    assert set(templates.snapshot()) == {"efa", "efa@1", "efa@2"}
    entry = body["status"]["stages"][0]
    assert entry["templates"] == ["efa@1"]
    cluster.mpijobs.pop("j-glue")  # the restart deleted it (recovery.py); the stage keeps its record
    sync(reconciler, body)
    assert worker(cluster.mpijobs["j-glue"])["spec"]["containers"][0]["resources"]["limits"]["vpc.amazonaws.com/efa"] == 4
    other = job(GLUE, name="k")
    sync(reconciler, other)
    assert cluster.mpijobs["k-glue"]["metadata"]["annotations"]["bertoperator.io/templates"] == "efa@2"


def test_a_templated_stage_waits_for_the_mpijob_crd_and_is_checked_against_it(cluster: FakeCluster) -> None:
    """An MPIJob CRD the operator cannot read holds the templated jobs only; once read, a template it refuses fails
    the job before anything is created, and a template it accepts goes on."""
    from tests.operator.cluster import mpijob_crd_object

    templates = catalog("istio-off")
    templates.configmap_event("ADDED", configmap("ttl", "name: ttl\nversion: '1'\npatch: |\n  spec:\n    runPolicy:\n"
                                                        "      ttlSecondsAfterFinish: 60\n"))
    templates.mpijob_crd(None, error="403")
    policies = Policies(team_policy(templates={"allowed": ["istio-off", "ttl"]}))
    reconciler = reconciler_for(cluster, policies, templates)
    fine, typo, plain = job({**GLUE, "templates": ["istio-off"]}), job({**GLUE, "templates": ["ttl"]}, name="t"), \
        job(GLUE, name="k")
    for body in (fine, typo, plain):
        sync(reconciler, body)
    assert set(cluster.mpijobs) == {"k-glue"}
    ready = condition(fine["status"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TemplateUnavailable")
    assert "the MPIJob CustomResourceDefinition mpijobs.kubeflow.org could not be read (403)" in ready["message"]
    templates.mpijob_crd({**mpijob_crd_object(), "metadata": {"name": "mpijobs.kubeflow.org", "resourceVersion": "1"}})
    sync(reconciler, fine)
    sync(reconciler, typo)
    assert set(cluster.mpijobs) == {"k-glue", "j-glue"}
    failed = condition(typo["status"], "Failed")
    assert failed["reason"] == "TemplateInvalid" and "spec.runPolicy.ttlSecondsAfterFinish" in failed["message"]
