"""Validators for rendered objects: the real MPIJob CRD schema and Kubernetes' core schemas.

Each validator is built once per process: kubernetes_validate.validate re-reads and re-parses its JSON schemas
(the 1.8 MB _definitions.json among them) on every call, which cost a property test 119 ms an example.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import importlib_resources
import jsonschema
import kubernetes_validate
import referencing
import yaml

from tests.conftest import shared_file

KUBERNETES_VERSION = kubernetes_validate.latest_version()
_SCHEMAS = importlib_resources.files("kubernetes_validate").joinpath(
    "kubernetes-json-schema", f"v{KUBERNETES_VERSION}-local-strict")


@lru_cache(maxsize=1)
def mpijob_validator() -> jsonschema.protocols.Validator:
    crd = yaml.safe_load(shared_file("crds/kubeflow.org_mpijobs.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v2beta1")
    schema = version["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def mpijob_errors(mpijob: dict[str, Any]) -> list[str]:
    """Schema violations of an MPIJob against the MPI Operator's own CRD (empty = valid)."""
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in mpijob_validator().iter_errors(mpijob)]


@lru_cache(maxsize=1)
def inference_service_crd() -> dict[str, Any]:
    """KServe's InferenceService CRD (../shared/crds), read with libyaml where there is one: it is 2 MB."""
    text = shared_file("crds/serving.kserve.io_inferenceservices.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=1)
def inference_service_validator() -> jsonschema.protocols.Validator:
    version = next(v for v in inference_service_crd()["spec"]["versions"] if v["name"] == "v1beta1")
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


def inference_service_errors(isvc: dict[str, Any]) -> list[str]:
    """Schema violations of an InferenceService against KServe's own CRD (empty = valid)."""
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in inference_service_validator().iter_errors(isvc)]


@lru_cache(maxsize=1)
def _definitions() -> referencing.Resource:
    return referencing.Resource.from_contents(json.loads(_SCHEMAS.joinpath("_definitions.json").read_text()))


@lru_cache(maxsize=None)
def object_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """kubernetes_validate's strict validator for one kind, as validate(strict=True) builds it, kept."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # rbac.authorization.k8s.io/v1 -> rbac-v1
    path = _SCHEMAS.joinpath(f"{kind.lower()}-{group_version}.json")
    if not path.is_file():
        raise kubernetes_validate.SchemaNotFoundError(version=KUBERNETES_VERSION, kind=kind, api_version=api_version)
    schema = json.loads(path.read_text())
    registry = _definitions() @ (referencing.Resource.from_contents(schema) @ referencing.Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def object_errors(obj: dict[str, Any]) -> list[str]:
    """A core Kubernetes object against Kubernetes' strict schema for its kind (empty = valid); the first error, as
    kubernetes_validate.validate(strict=True) reports it."""
    for error in object_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj):
        return [f"{error.message} at {'.'.join(map(str, error.path))}"]
    return []


def pod_errors(mpijob: dict[str, Any]) -> list[str]:
    """Each replica's pod template, as a Pod, against Kubernetes' strict core schema."""
    errors = []
    for replica, spec in mpijob["spec"]["mpiReplicaSpecs"].items():
        template = spec["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{mpijob['metadata']['name']}-{replica.lower()}", **template.get("metadata", {})},
            "spec": template["spec"],
        }
        errors += [f"{replica}: {error}" for error in object_errors(pod)]
    return errors
