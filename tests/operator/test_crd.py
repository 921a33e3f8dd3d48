"""The CRDs (BertTrainingJob, BertTrainingPolicy) are generated from the models, structural, and agree with them."""

from __future__ import annotations

import functools
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bert_operator.api import SpecError
from bert_operator.api.crd import crd, crd_yaml, policy_crd, policy_crd_yaml
from bert_operator.policy import parse_policy
from tests.conftest import ALL_EXAMPLES, EXAMPLES, KATIB_EXAMPLES, POLICY_EXAMPLES, REPO
from tests.schemas import KUBERNETES_VERSION

#: Keywords a structural schema node may carry.
ALLOWED = {
    "type", "description", "properties", "items", "required", "enum", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "minProperties", "maxProperties", "additionalProperties", "anyOf",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "nullable", "x-kubernetes-list-type",
    "x-kubernetes-map-type", "x-kubernetes-validations",
}


def spec_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def policy_schema() -> dict[str, Any]:
    return policy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


#: Both CRDs' root schemas, for the rules every one of them must keep.
SCHEMAS = {"job": spec_schema, "policy": policy_schema}


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def test_checked_in_crd_is_the_generated_one() -> None:
    assert (REPO / "manifests" / "crd.yaml").read_text() == crd_yaml(), "run: bertjob crd > manifests/crd.yaml"


def test_checked_in_policy_crd_is_the_generated_one() -> None:
    assert (REPO / "manifests" / "policy-crd.yaml").read_text() == policy_crd_yaml(), \
        "run: bertjob crd --policy > manifests/policy-crd.yaml"


@pytest.mark.parametrize("make", [crd, policy_crd], ids=["job", "policy"])
def test_crd_object_is_valid_for_kubernetes(make) -> None:
    kubernetes_validate.validate(make(), KUBERNETES_VERSION, strict=True)


def test_crd_names_columns_and_status_subresource() -> None:
    spec = crd()["spec"]
    assert spec["names"]["shortNames"] == ["btj"] and spec["names"]["plural"] == "berttrainingjobs"
    assert spec["names"]["categories"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:6] == ["Phase", "Task", "Model", "Workers", "GPUs", "Progress"] and columns[-1] == "Age"


def test_policy_crd_is_cluster_scoped_with_its_names_columns_and_status_subresource() -> None:
    spec = policy_crd()["spec"]
    assert spec["scope"] == "Cluster" and spec["group"] == "bertoperator.io"
    assert spec["names"] == {"kind": "BertTrainingPolicy", "listKind": "BertTrainingPolicyList", "plural": "berttrainingpolicies",
                             "singular": "berttrainingpolicy", "shortNames": ["btp"], "categories": crd()["spec"]["names"]["categories"]}
    [version] = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {"Namespaces": ".status.namespaces", "Jobs": ".status.jobs",
                       "Valid": '.status.conditions[?(@.type=="Valid")].status', "Conflict": ".status.conflicts[0]",
                       "Age": ".metadata.creationTimestamp"}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status) == {"namespaces", "jobs", "conflicts", "conditions", "observedGeneration", "kopf"}
    job_status = spec_schema()["properties"]["status"]["properties"]
    assert status["conditions"]["items"] == job_status["conditions"]["items"]  # the job's Condition, one model


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_schema_is_structural(schema) -> None:
    for path, node in nodes(schema()):
        assert set(node) <= ALLOWED, f"{path}: {set(node) - ALLOWED}"
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}] and "type" not in node, path
            continue
        assert "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
            pytest.fail(f"{path}: exclusiveMinimum must be boolean in OpenAPI v3.0")


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_every_field_is_described_for_kubectl_explain(schema) -> None:
    spec = schema()["properties"]["spec"]
    undocumented = [path for path, node in nodes(spec) if path and not path.endswith(("[]", "}")) and "description" not in node]
    assert undocumented == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_api_servers_schema(path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        jsonschema.Draft4Validator(spec_schema()).validate(document)


def test_every_example_is_a_job_or_a_policy() -> None:
    """The split in tests/conftest.py drops no example from both the job tests and the policy tests."""
    assert EXAMPLES and POLICY_EXAMPLES and sorted(EXAMPLES + POLICY_EXAMPLES + KATIB_EXAMPLES) == ALL_EXAMPLES


@pytest.mark.parametrize("path", POLICY_EXAMPLES, ids=lambda p: p.name)
def test_policy_examples_pass_the_api_servers_schema_and_parse(path) -> None:
    [document] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    jsonschema.Draft4Validator(policy_schema()).validate(document)
    assert parse_policy(document).metadata.name == path.stem.removeprefix("policy-")


@pytest.mark.parametrize("field, value", [
    ("limits", {"maxGpusPerJob": -1}),
    ("limits", {"forbiddenFields": ["spec.image"]}),
    ("forced", {"queueName": "Team_A"}),
    ("defaults", {"output": {"endpoint": "https://s3.example.com"}}),
    ("namespaceSelector", {"matchExpressions": [{"key": "team", "operator": "Matches"}]}),
])
def test_policy_schema_refuses_what_parse_policy_refuses(field: str, value: dict[str, Any]) -> None:
    """The API server refuses a malformed policy even with the webhook off, as the webhook would."""
    document = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "p"},
                "spec": {field: value}}
    assert list(jsonschema.Draft4Validator(policy_schema()).iter_errors(document))
    with pytest.raises(SpecError):
        parse_policy(document)


# ------------------------------------------------ CEL: what parse_policy refuses beyond the schema (issue 25, item 1)


@functools.cache
def cel_program(rule: str) -> Any:
    """A CEL rule compiled once (cel-python's parser is slow)."""
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def cel_errors(schema: dict[str, Any], value: Any, path: str = "", fired: set[str] | None = None) -> list[str]:
    """Every x-kubernetes-validations rule of `schema` that `value` breaks, evaluated with a real CEL implementation
    (cel-python) where the API server would evaluate it: at each node the rule sits on. An evaluation error counts as
    a refusal, as it does on the API server. `fired` collects the rules that refused."""
    import celpy

    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        result = cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            out.append(f"{path or '<root>'}: {rule['message']}")
            if fired is not None:
                fired.add(rule["rule"])
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                out += cel_errors(sub, value[key], f"{path}.{key}", fired)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            out += cel_errors(schema["items"], item, f"{path}[{index}]", fired)
    return out


def sample(schema: dict[str, Any]) -> Any:
    """A value the structural `schema` accepts (for a policy value a test must set in defaults and forced alike)."""
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("x-kubernetes-int-or-string"):
        return "1"
    kind = schema.get("type")
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [sample(schema["items"])]
    if kind == "object":
        extra = schema.get("additionalProperties")
        return {"a": sample(extra)} if isinstance(extra, dict) else {}
    return "a"


def both_set(path: tuple[str, ...]) -> dict[str, Any]:
    """A policy spec that sets `path` in defaults and in forced."""
    node = policy_schema()["properties"]["spec"]["properties"]["forced"]
    for key in path:
        node = node["properties"][key]
    value = sample(node)
    spec: dict[str, Any] = {}
    for part in ("defaults", "forced"):
        target = spec.setdefault(part, {})
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return spec


SELECTOR_CASES = [{"matchExpressions": [{"key": "team", "operator": "In"}]},
                  {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": []}]},
                  {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]},
                  {"matchExpressions": [{"key": "team", "operator": "DoesNotExist", "values": ["a"]}]}]


def test_every_rule_parse_policy_adds_is_a_cel_rule_of_the_crd_that_refuses_the_same_policies() -> None:
    """With the webhook off, `kubectl apply` of an invalid policy still fails: each rule of policy._policy_rules has
    a CEL twin in the policy CRD, and every CEL rule written there refuses a policy here (none is left unexercised)."""
    from bert_operator.api.crd import value_paths

    schema = policy_schema()
    cases = [both_set(path) for path in value_paths()] + [{"namespaceSelector": s} for s in SELECTOR_CASES]
    fired: set[str] = set()
    for spec in cases:
        document = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "p"},
                    "spec": spec}
        assert list(jsonschema.Draft4Validator(schema).iter_errors(document)) == [], spec  # only CEL can refuse it
        with pytest.raises(SpecError):
            parse_policy(document)
        assert cel_errors(schema, document, fired=fired), f"the CRD admits what parse_policy refuses: {spec}"
    written = {rule["rule"] for _, node in nodes(schema) for rule in node.get("x-kubernetes-validations", [])}
    assert written and fired == written


@pytest.mark.parametrize("path", POLICY_EXAMPLES, ids=lambda p: p.name)
def test_the_policy_examples_pass_every_cel_rule(path) -> None:
    [document] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert cel_errors(policy_schema(), document) == []
    both = {**document, "spec": {**document["spec"], "namespaceSelector": {"matchExpressions": [
        {"key": "team", "operator": "In", "values": ["a"]}, {"key": "gpu", "operator": "Exists"}]}}}
    assert cel_errors(policy_schema(), both) == []


def test_a_job_without_output_passes_the_api_servers_schema() -> None:
    """A BertTrainingPolicy's defaults.output may give it (the operator requires it after the policies: test_reconcile_policy)."""
    document = yaml.safe_load(EXAMPLES[0].read_text())
    del document["spec"]["output"]
    assert list(jsonschema.Draft4Validator(spec_schema()).iter_errors(document)) == []
    assert "output" not in spec_schema()["properties"]["spec"].get("required", [])


def test_api_server_schema_enforces_one_task_and_ranges() -> None:
    document = yaml.safe_load(EXAMPLES[0].read_text())
    document["spec"]["task"] = {}
    document["spec"]["resources"] = {"gpusPerWorker": -1, "shmSize": "1 Gi"}
    errors = list(jsonschema.Draft4Validator(spec_schema()).iter_errors(document))
    assert len(errors) == 3


def test_the_vendored_schemas_are_kubernetes_own() -> None:
    """api/schemas/ (affinity-v1.json, podtemplatespec-v1.json) is what scripts/vendor-k8s-schema.py makes of
    kubernetes-validate's schemas."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "scripts/vendor-k8s-schema.py", "--check"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
