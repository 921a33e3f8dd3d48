"""Chart.yaml's metadata and Artifact Hub annotations agree with the chart, and its README's values table is current."""

from __future__ import annotations

import importlib.util
import tomllib
from typing import Any

import jsonschema
import pytest
import yaml

from bert_operator.api.crd import crd, policy_crd
from bert_operator.api.parse import parse_job
from bert_operator.policy import parse_policy
from bert_operator.render.values import DEFAULT_TRAINER_IMAGE
from tests.chart.render import CHART, crd_objects
from tests.conftest import REPO

META = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANNOTATIONS: dict[str, str] = META["annotations"]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
#: Artifact Hub's words for both (https://artifacthub.io/docs/topics/annotations/helm/).
CAPABILITIES = {"Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights", "Auto Pilot"}
CATEGORIES = {"ai-machine-learning", "database", "integration-delivery", "monitoring-logging", "networking", "security",
              "storage", "streaming-messaging"}


def listed(key: str) -> list[dict[str, Any]]:
    """An annotation whose value is YAML (Artifact Hub's list annotations), parsed."""
    value = yaml.safe_load(ANNOTATIONS[key])
    assert isinstance(value, list) and all(isinstance(item, dict) for item in value), key
    return value


def schema_of(definition: dict[str, Any]) -> dict[str, Any]:
    return definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_every_annotation_is_a_string_and_the_scalar_ones_have_allowed_values() -> None:
    assert all(isinstance(value, str) for value in ANNOTATIONS.values())
    assert ANNOTATIONS["artifacthub.io/operator"] == "true"
    assert ANNOTATIONS["artifacthub.io/operatorCapabilities"] in CAPABILITIES
    assert ANNOTATIONS["artifacthub.io/category"] in CATEGORIES
    assert ANNOTATIONS["artifacthub.io/prerelease"] in {"true", "false"}
    license_ = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert ANNOTATIONS["artifacthub.io/license"] == license_


def test_links_and_chart_fields_point_at_real_places() -> None:
    for link in listed("artifacthub.io/links"):
        assert link["name"] and link["url"].startswith("https://"), link
        if "/blob/main/" in link["url"]:
            assert (REPO / link["url"].split("/blob/main/", 1)[1]).is_file(), link["url"]
    assert META["icon"].endswith("/main/docs/icon.svg") and (REPO / "docs" / "icon.svg").is_file()
    assert META["kubeVersion"] and META["home"] and META["sources"] and META["keywords"]


def test_the_crds_annotation_lists_the_crds_the_chart_installs() -> None:
    installed = {(obj["spec"]["names"]["kind"], version["name"]) for obj in crd_objects() for version in obj["spec"]["versions"]}
    described = listed("artifacthub.io/crds")
    assert {(item["kind"], item["version"]) for item in described} == installed
    for item in described:
        assert item["name"] == item["kind"].lower() and item["displayName"] and item["description"]


def test_the_images_are_the_ones_values_yaml_runs() -> None:
    images = {item["name"]: item["image"] for item in listed("artifacthub.io/images")}
    assert images["operator"] == f"{VALUES['image']['repository']}:{VALUES['image']['tag'] or META['appVersion']}"
    assert images["trainer"] == VALUES["trainerImage"] == DEFAULT_TRAINER_IMAGE


@pytest.mark.parametrize("example", ["squad-v1.1.yaml", "policy-cluster-defaults.yaml"])
def test_the_crd_examples_are_the_repositorys_examples_and_valid(example: str) -> None:
    wanted = yaml.safe_load((REPO / "examples" / example).read_text())
    [quoted] = [item for item in listed("artifacthub.io/crdsExamples") if item["metadata"]["name"] == wanted["metadata"]["name"]]
    assert quoted == wanted, f"artifacthub.io/crdsExamples differs from examples/{example}"
    if quoted["kind"] == "BertTrainingJob":
        jsonschema.Draft4Validator(schema_of(crd())).validate(quoted)
        parse_job(quoted)
    else:
        jsonschema.Draft4Validator(schema_of(policy_crd())).validate(quoted)
        parse_policy(quoted)


def test_the_schema_check_would_catch_a_broken_example() -> None:
    [job] = [item for item in listed("artifacthub.io/crdsExamples") if item["kind"] == "BertTrainingJob"]
    broken = {**job, "spec": {**job["spec"], "precision": "fp8"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema_of(crd())).validate(broken)


def test_the_chart_readme_values_table_is_current() -> None:
    spec = importlib.util.spec_from_file_location("render_chart_readme", REPO / "scripts" / "render-chart-readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (CHART / "README.md").read_text()
    assert current == module.readme(current), f"the values table is out of date: run {module.COMMAND}"
    for key in module.leaves(VALUES, {}):  # every values.yaml key has its row
        assert f"| `{'.'.join(key[0])}` |" in current or any(
            f"| `{'.'.join(key[0][:n])}` |" in current for n in range(1, len(key[0]))), key
