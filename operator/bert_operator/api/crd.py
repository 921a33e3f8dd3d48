"""The CustomResourceDefinitions (BertTrainingJob, BertTrainingPolicy), generated from the models.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI
v3.0 schema: no $ref, no `anyOf` that carries types, no `const`, boolean
`exclusiveMinimum`, no `additionalProperties: false` beside `properties`.
:func:`structural` performs exactly those translations, so the checked-in
`manifests/crd.yaml` and `manifests/policy-crd.yaml` are always a function of the Python models.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from .models import BertTrainingJobSpec
from .policy import POLICY_KIND, POLICY_PLURAL, POLICY_SHORT_NAMES, POLICY_SINGULAR, BertTrainingPolicySpec, PolicyValues
from .presets import API_GROUP, API_VERSION, CATEGORIES, KIND, PLURAL, SHORT_NAMES, SINGULAR
from .status import BertTrainingJobStatus, BertTrainingPolicyStatus

#: Keys of JSON Schema that a structural schema does not use.
_DROPPED = {"title", "default", "$defs", "format", "$comment"}


def task_keys(spec_model: type[BaseModel] = BertTrainingJobSpec) -> list[str]:
    """The keys under `spec.task`, as users write them, in the order the API documents them: `TaskSpec`'s
    fields are the list of tasks (the registry, ``bert_operator.tasks``, is ordered by them too)."""
    task_spec = _nested_model(spec_model.model_fields["task"].annotation)
    assert task_spec is not None
    return [info.alias or name for name, info in task_spec.model_fields.items()]


def printer_columns(spec_model: type[BaseModel] = BertTrainingJobSpec) -> list[dict[str, Any]]:
    """Printer columns of `kubectl get btj`; the Task column's description lists the tasks `spec_model` offers."""
    *others, last = task_keys(spec_model)
    tasks = f"{', '.join(others)} or {last}" if others else last
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
        {"name": "Task", "type": "string", "jsonPath": ".status.task", "description": f"{tasks}."},
        {"name": "Model", "type": "string", "jsonPath": ".status.model", "description": "Model preset."},
        {"name": "Workers", "type": "integer", "jsonPath": ".status.workers", "description": "Worker pods."},
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus", "description": "GPUs over all workers."},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress.display",
         "description": "Percent of all stages' steps done."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason",
         "description": "Why the job is not running, or Running."},
        {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage", "priority": 1,
         "description": "Stage running now."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


#: Printer columns of `kubectl get btp`. JSONPath cannot count a list, so the conflicts show as the Valid
#: condition's status and, with -o wide, the first conflict's text.
POLICY_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Namespaces", "type": "integer", "jsonPath": ".status.namespaces", "description": "Namespaces it selects."},
    {"name": "Jobs", "type": "integer", "jsonPath": ".status.jobs", "description": "BertTrainingJobs in those namespaces."},
    {"name": "Valid", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Valid\")].status",
     "description": "False when the policy is invalid or conflicts with another one."},
    {"name": "Conflict", "type": "string", "jsonPath": ".status.conflicts[0]", "priority": 1,
     "description": "The first conflict with another policy."},
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


def spec_schema(spec_model: type[BaseModel] = BertTrainingJobSpec) -> dict[str, Any]:
    """Structural schema of `.spec`, with the one-task rule stated for the API server too."""
    schema = structural(spec_model)
    task = schema["properties"]["task"]
    task["minProperties"] = 1
    task["maxProperties"] = 1
    return schema


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds (X or X | None), if it is one."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(
        annotation) is typing.Union else (annotation,)
    return next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)


#: Printer columns of `kubectl get btj`.
PRINTER_COLUMNS: list[dict[str, Any]] = printer_columns()


def value_paths(model: type[BaseModel] = PolicyValues) -> list[tuple[str, ...]]:
    """The wire paths of every value a policy's defaults or forced values may set, leaf by leaf as policy.values_of
    applies them (runPolicy field by field)."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        inner = _nested_model(info.annotation)
        paths += [(alias, *sub) for sub in value_paths(inner)] if inner is not None else [(alias,)]
    return paths


def _has(root: str, path: tuple[str, ...]) -> str:
    """CEL that is true when self.<root>.<path> is set, testing each level first (a missing level is an error)."""
    return " && ".join(f"has(self.{'.'.join((root, *path[:depth]))})" for depth in range(len(path) + 1))


#: metav1.LabelSelector's own rule for a requirement, which its schema cannot say.
SELECTOR_RULE = {
    "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
            "(!has(self.values) || size(self.values) == 0)",
    "message": "values must not be empty with operator In or NotIn, and must be empty with Exists or DoesNotExist",
}


def policy_spec_schema() -> dict[str, Any]:
    """Structural schema of a policy's `.spec`, with every rule policy.parse_policy checks beyond the models as CEL
    (x-kubernetes-validations): the API server then refuses such a policy with the webhook off or unreachable, and
    no invalid policy reaches the operator (which would hold the namespaces it selects)."""
    schema = structural(BertTrainingPolicySpec)
    requirement = schema["properties"]["namespaceSelector"]["properties"]["matchExpressions"]["items"]
    requirement["x-kubernetes-validations"] = [dict(SELECTOR_RULE)]
    schema["x-kubernetes-validations"] = [
        {"rule": f"!({_has('defaults', path)} && {_has('forced', path)})",
         "message": f"spec.defaults.{'.'.join(path)} and spec.forced.{'.'.join(path)} are both set: the default would "
                    "never apply; keep one of them"}
        for path in value_paths()]
    return schema


def status_schema(model: type[BaseModel] = BertTrainingJobStatus) -> dict[str, Any]:
    """Structural schema of `.status`, with room for kopf's own bookkeeping (its handlers' progress)."""
    schema = structural(model)
    schema.pop("x-kubernetes-preserve-unknown-fields", None)
    schema["properties"]["kopf"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "kopf's handler bookkeeping.",
    }
    return schema


def _definition(kind: str, plural: str, singular: str, short_names: tuple[str, ...], scope: str,
                columns: list[dict[str, Any]], description: str, spec: dict[str, Any],
                status: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """One CustomResourceDefinition of the group: both kinds share everything but their names and schemas."""
    properties = {
        "apiVersion": {"type": "string", "description": f"{API_GROUP}/{API_VERSION}"},
        "kind": {"type": "string", "description": kind},
        "metadata": {"type": "object"},
        "spec": spec,
        "status": status,
    }
    root: dict[str, Any] = {"type": "object", "description": description}
    if required:
        root["required"] = required
    root["properties"] = properties
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "bert-operator", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": list(short_names),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crd(spec_model: type[BaseModel] = BertTrainingJobSpec) -> dict[str, Any]:
    """The BertTrainingJob CustomResourceDefinition (of `spec_model`: the API's, or one with a task added)."""
    return _definition(
        KIND, PLURAL, SINGULAR, SHORT_NAMES, "Namespaced", printer_columns(spec_model),
        "BertTrainingJob runs BERT pretraining, fine-tuning or data preparation as Kubeflow MPIJobs.",
        spec_schema(spec_model), status_schema(), ["spec"])


def policy_crd() -> dict[str, Any]:
    """The BertTrainingPolicy CustomResourceDefinition: cluster-scoped, because a platform team's rule selects
    namespaces and must not live in (or be editable from) any tenant's namespace. The spec may be omitted: an empty
    policy selects every namespace and sets nothing, as its models default."""
    return _definition(
        POLICY_KIND, POLICY_PLURAL, POLICY_SINGULAR, POLICY_SHORT_NAMES, "Cluster", POLICY_PRINTER_COLUMNS,
        "BertTrainingPolicy: a platform team's defaults, limits and forced values for the BertTrainingJobs of the "
        "namespaces it selects.",
        policy_spec_schema(), status_schema(BertTrainingPolicyStatus), [])


def crd_yaml() -> str:
    """The CRD as the YAML `bertjob crd` prints and manifests/crd.yaml holds."""
    header = "# Generated by `bertjob crd` from bert_operator.api.models; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


def policy_crd_yaml() -> str:
    """The policy CRD as the YAML `bertjob crd --policy` prints and manifests/policy-crd.yaml holds."""
    header = "# Generated by `bertjob crd --policy` from bert_operator.api.policy; do not edit by hand.\n"
    return header + yaml.safe_dump(policy_crd(), sort_keys=False, width=120)
