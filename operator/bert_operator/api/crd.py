"""The BertTrainingJob CustomResourceDefinition, generated from the models.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI
v3.0 schema: no $ref, no `anyOf` that carries types, no `const`, boolean
`exclusiveMinimum`, no `additionalProperties: false` beside `properties`.
:func:`structural` performs exactly those translations, so the checked-in
`manifests/crd.yaml` is always a function of the Python models.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from .models import BertTrainingJobSpec
from .presets import API_GROUP, API_VERSION, CATEGORIES, KIND, PLURAL, SHORT_NAMES, SINGULAR
from .status import BertTrainingJobStatus

#: Keys of JSON Schema that a structural schema does not use.
_DROPPED = {"title", "default", "$defs", "format", "$comment"}

#: Printer columns of `kubectl get btj`.
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
    {"name": "Task", "type": "string", "jsonPath": ".status.task", "description": "pretrain, squad, glue or prepareData."},
    {"name": "Model", "type": "string", "jsonPath": ".status.model", "description": "Model preset."},
    {"name": "Workers", "type": "integer", "jsonPath": ".status.workers", "description": "Worker pods."},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus", "description": "GPUs over all workers."},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress.display", "description": "Percent of all stages' steps done."},
    {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason",
     "description": "Why the job is not running, or Running."},
    {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage", "priority": 1, "description": "Stage running now."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """A structural OpenAPI v3 schema of `model`'s wire form."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}))


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    node = dict(node)
    if "anyOf" in node:
        options = [option for option in node.pop("anyOf") if option.get("type") != "null"]
        if len(options) == 1:
            # Optional[X]: X itself; absence means null.
            inner = _convert(options[0], defs)
            node = {**inner, **{k: v for k, v in node.items() if k not in inner or k == "description"}}
        else:
            node["anyOf"] = options
    if isinstance(node.get("type"), list):  # JSON schema's ["array", "null"]: OpenAPI's one type, nullable
        kinds = [kind for kind in node["type"] if kind != "null"]
        if len(kinds) < len(node["type"]):
            node["nullable"] = True
        node["type"] = kinds[0]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                out[key] = _convert(value, defs)
        elif key in ("properties",):
            out[key] = {name: _convert(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _convert(value, defs)
    if out.get("x-kubernetes-int-or-string"):
        # Quantities: the exact anyOf Kubernetes allows for int-or-string; the
        # pattern stays outside it (it only constrains strings), as in core's Quantity.
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("x-kubernetes-preserve-unknown-fields") and "properties" not in out:
        out.setdefault("type", "object")
    if "properties" in out:
        out.setdefault("type", "object")
    return out


def spec_schema() -> dict[str, Any]:
    """Structural schema of `.spec`, with the one-task rule stated for the API server too."""
    schema = structural(BertTrainingJobSpec)
    task = schema["properties"]["task"]
    task["minProperties"] = 1
    task["maxProperties"] = 1
    return schema


def status_schema() -> dict[str, Any]:
    """Structural schema of `.status`, with room for kopf's own bookkeeping."""
    schema = structural(BertTrainingJobStatus)
    schema.pop("x-kubernetes-preserve-unknown-fields", None)
    schema["properties"]["kopf"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "kopf's handler bookkeeping.",
    }
    return schema


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "bert-operator", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "BertTrainingJob runs BERT pretraining, fine-tuning or data preparation as Kubeflow MPIJobs.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "bertoperator.io/v1alpha1"},
                                "kind": {"type": "string", "description": "BertTrainingJob"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML `bertjob crd` prints and manifests/crd.yaml holds."""
    header = "# Generated by `bertjob crd` from bert_operator.api.models; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
