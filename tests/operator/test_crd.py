"""The CRD is generated from the models, structural, and agrees with them."""

from __future__ import annotations

from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bert_operator.api.crd import crd, crd_yaml
from tests.conftest import EXAMPLES, REPO
from tests.schemas import KUBERNETES_VERSION

#: Keywords a structural schema node may carry.
ALLOWED = {
    "type", "description", "properties", "items", "required", "enum", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "minProperties", "maxProperties", "additionalProperties", "anyOf",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "nullable", "x-kubernetes-list-type",
    "x-kubernetes-map-type",
}


def spec_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


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


def test_crd_object_is_valid_for_kubernetes() -> None:
    kubernetes_validate.validate(crd(), KUBERNETES_VERSION, strict=True)


def test_crd_names_columns_and_status_subresource() -> None:
    spec = crd()["spec"]
    assert spec["names"]["shortNames"] == ["btj"] and spec["names"]["plural"] == "berttrainingjobs"
    assert spec["names"]["categories"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:6] == ["Phase", "Task", "Model", "Workers", "GPUs", "Progress"] and columns[-1] == "Age"


def test_schema_is_structural() -> None:
    for path, node in nodes(spec_schema()):
        assert set(node) <= ALLOWED, f"{path}: {set(node) - ALLOWED}"
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}] and "type" not in node, path
            continue
        assert "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
            pytest.fail(f"{path}: exclusiveMinimum must be boolean in OpenAPI v3.0")


def test_every_field_is_described_for_kubectl_explain() -> None:
    spec = spec_schema()["properties"]["spec"]
    undocumented = [path for path, node in nodes(spec) if path and not path.endswith(("[]", "}")) and "description" not in node]
    assert undocumented == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_api_servers_schema(path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        jsonschema.Draft4Validator(spec_schema()).validate(document)


def test_api_server_schema_enforces_one_task_and_ranges() -> None:
    document = yaml.safe_load(EXAMPLES[0].read_text())
    document["spec"]["task"] = {}
    document["spec"]["resources"] = {"gpusPerWorker": -1, "shmSize": "1 Gi"}
    errors = list(jsonschema.Draft4Validator(spec_schema()).iter_errors(document))
    assert len(errors) == 3


def test_the_vendored_affinity_schema_is_kubernetes_own() -> None:
    """api/schemas/affinity-v1.json is what scripts/vendor-k8s-schema.py makes of kubernetes-validate's schema."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "scripts/vendor-k8s-schema.py", "--check"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
