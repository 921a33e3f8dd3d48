"""The chart's part in BERT training as a service: tenant roles, a default policy from values, the policy webhook.

Rendered by the real Helm engine (tests/chart/render.py); the objects themselves are validated with
kubernetes-validate in test_chart.py's value sets.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from bert_operator.api.crd import policy_crd
from bert_operator.policy import decide, parse_policy
from tests.chart.render import NAMESPACE, POLICY_WEBHOOK_PATH, kind, objects, one
from tests.chart.test_operator_access import granted
from tests.conftest import REPO

JOB_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
READ = {"get", "list", "watch"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return granted(role["rules"])


def on(resource: str, verbs: set[str]) -> set[tuple[str, str, str]]:
    return {("bertoperator.io", resource, verb) for verb in verbs}


def aggregated_into(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    return {key.removeprefix(AGGREGATE) for key, value in labels.items() if key.startswith(AGGREGATE) and value == "true"}


def test_tenant_roles_carry_the_aggregation_labels_and_exactly_their_rules() -> None:
    found = objects()
    edit, view = one(found, "ClusterRole", "bert-operator-edit"), one(found, "ClusterRole", "bert-operator-view")
    reader = one(found, "ClusterRole", "bert-operator-policy-reader")
    admin = one(found, "ClusterRole", "bert-operator-policy-admin")
    assert aggregated_into(edit) == {"edit", "admin"}
    assert rules_of(edit) == on("berttrainingjobs", JOB_VERBS) | on("berttrainingjobs/status", {"get"})
    assert aggregated_into(view) == {"view"}
    assert rules_of(view) == on("berttrainingjobs", READ) | on("berttrainingjobs/status", READ) | on("berttrainingpolicies", READ)
    # Writing policies is the platform team's: the admin role is aggregated into nothing a tenant holds.
    assert aggregated_into(admin) == set() and aggregated_into(reader) == set()
    assert rules_of(admin) == (on("berttrainingpolicies", JOB_VERBS) | on("berttrainingpolicies/status", {"get"})
                               | on("berttrainingjobs", READ) | on("berttrainingjobs/status", READ))
    assert rules_of(reader) == on("berttrainingpolicies", READ) | on("berttrainingpolicies/status", READ)


def test_no_tenant_role_grants_writing_policies_or_job_status() -> None:
    """What tenants hold (edit, view and the roles they aggregate into) cannot change a policy or the operator's status."""
    found = objects()
    writes = {"create", "delete", "deletecollection", "patch", "update"}
    for name in ("bert-operator-edit", "bert-operator-view", "bert-operator-policy-reader"):
        granted_here = rules_of(one(found, "ClusterRole", name))
        assert not granted_here & (on("berttrainingpolicies", writes) | on("berttrainingpolicies/status", writes)
                                   | on("berttrainingjobs/status", writes)), name


def test_tenant_roles_follow_the_release_name_and_can_be_turned_off() -> None:
    names = {role["metadata"]["name"] for role in kind(objects(), "ClusterRole")}
    assert names == {"bert-operator", "bert-operator-edit", "bert-operator-view", "bert-operator-policy-reader",
                     "bert-operator-policy-admin"}
    assert {role["metadata"]["name"] for role in kind(objects({"tenantRoles": {"enabled": False}}), "ClusterRole")} == {"bert-operator"}


def test_no_default_policy_unless_asked() -> None:
    assert not kind(objects(), "BertTrainingPolicy")


def test_the_default_policy_from_values_is_a_valid_policy_that_applies() -> None:
    example = yaml.safe_load((REPO / "examples" / "policy-team-a.yaml").read_text())
    [policy] = kind(objects({"defaultPolicy": {"enabled": True, "name": "team-a", "spec": example["spec"]}}), "BertTrainingPolicy")
    assert policy["apiVersion"] == "bertoperator.io/v1alpha1" and "namespace" not in policy["metadata"]  # cluster-scoped
    assert policy["metadata"]["name"] == "team-a" and policy["spec"] == example["spec"]
    schema = policy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft4Validator(schema).validate(policy)
    parsed = parse_policy(policy)
    job = yaml.safe_load((REPO / "examples" / "glue-mrpc.yaml").read_text())
    job["metadata"]["namespace"] = "team-a"
    del job["spec"]["output"]
    decision = decide(job, {"bertoperator.io/team": "team-a"}, [parsed])
    assert decision.violations == () and decision.job.spec.queue_name == "team-a"


def test_an_empty_default_policy_renders_as_an_empty_spec() -> None:
    [policy] = kind(objects({"defaultPolicy": {"enabled": True, "name": "default", "spec": {}}}), "BertTrainingPolicy")
    assert policy["spec"] == {} and parse_policy(policy).spec.namespace_selector.match_labels == {}


@pytest.mark.parametrize("values", [{"webhook": {"enabled": True}},
                                    {"webhook": {"enabled": True, "certificates": "helm"}, "watchNamespaces": ["ml-training"]}],
                         ids=["cert-manager", "helm-namespaced"])
def test_the_policy_webhook_goes_to_the_operators_policy_handler_on_the_same_service(values: dict[str, Any]) -> None:
    [configuration] = kind(objects(values), "ValidatingWebhookConfiguration")
    jobs, policies = configuration["webhooks"]
    assert policies["name"] == "validate.berttrainingpolicies.bertoperator.io"
    assert policies["rules"] == [{"apiGroups": ["bertoperator.io"], "apiVersions": ["v1alpha1"], "resources": ["berttrainingpolicies"],
                                  "operations": ["CREATE", "UPDATE"], "scope": "Cluster"}]
    assert "namespaceSelector" not in policies  # cluster-scoped objects: a namespaceSelector would never skip them
    assert policies["clientConfig"]["service"] == {**jobs["clientConfig"]["service"], "path": POLICY_WEBHOOK_PATH}
    assert policies["clientConfig"]["service"]["namespace"] == NAMESPACE
    assert policies["sideEffects"] == "None" and policies["failurePolicy"] == "Fail"  # policies fail closed
    assert jobs["failurePolicy"] == "Fail"  # the job webhook keeps its own setting
    assert "objectSelector" not in policies  # no policy is exempt, unless the chart makes its own
    lenient = objects({**values, "webhook": {**values["webhook"], "policyFailurePolicy": "Ignore"}})
    assert kind(lenient, "ValidatingWebhookConfiguration")[0]["webhooks"][1]["failurePolicy"] == "Ignore"


def test_the_charts_own_default_policy_alone_is_exempt_from_the_failing_closed_policy_webhook() -> None:
    """Made in the same install as the webhook configuration, before the operator serves it: Fail would refuse it."""
    rendered = objects({"webhook": {"enabled": True}, "defaultPolicy": {"enabled": True, "name": "default", "spec": {}}})
    [policy] = kind(rendered, "BertTrainingPolicy")
    policies = kind(rendered, "ValidatingWebhookConfiguration")[0]["webhooks"][1]
    assert policies["failurePolicy"] == "Fail"
    [requirement] = policies["objectSelector"]["matchExpressions"]
    assert requirement == {"key": "bertoperator.io/chart-default-policy", "operator": "DoesNotExist"}
    assert policy["metadata"]["labels"][requirement["key"]] == "true"
