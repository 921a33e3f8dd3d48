"""Validators for rendered objects: the real MPIJob CRD schema and Kubernetes' core schemas."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import MPIJOB_CRD

KUBERNETES_VERSION = kubernetes_validate.latest_version()


@lru_cache(maxsize=1)
def mpijob_validator() -> jsonschema.protocols.Validator:
    if not MPIJOB_CRD.exists():
        pytest.skip(f"MPIJob CRD not found at {MPIJOB_CRD}; it ships in the project's shared/ folder")
    crd = yaml.safe_load(MPIJOB_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v2beta1")
    schema = version["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def mpijob_errors(mpijob: dict[str, Any]) -> list[str]:
    """Schema violations of an MPIJob against the MPI Operator's own CRD (empty = valid)."""
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in mpijob_validator().iter_errors(mpijob)]


def object_errors(obj: dict[str, Any]) -> list[str]:
    """A core Kubernetes object against Kubernetes' strict schema for its kind (empty = valid)."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{exc.message} at {'.'.join(map(str, exc.path))}"]
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
