"""Checking what job templates changed in an MPIJob against the schemas the API server will apply.

Two schemas stand between a rendered MPIJob and the pods it makes: the MPIJob CRD's structural schema, which the API
server validates the MPIJob against (and prunes: a field it does not declare is dropped without a word), and core/v1,
which the MPI Operator's pods must pass when it creates them (a refusal there is only a Warning Event on the MPIJob,
long after the job was accepted). The operator's own rendering is held to both by the tests; what a platform's
overlay adds is not, so it is checked here before anything is created, with the path of each error so the overlay
and its line can be named.

Why only the changed parts: validating a whole MPIJob against the MPIJob CRD's 300 KB schema costs about 1.6 ms with
`jsonschema`, more than the templates' whole budget (1 ms per MPIJob). The merge is copy-on-write (merge.py), so a
subtree an overlay did not touch is the same object in the base and the result; the walk below skips those, checks
each object or list it passes through for its own keywords (type, required, the fields it declares) and goes on into
what changed or is new, deciding the plain keywords (type, enum, required) itself and leaving the rest to
`jsonschema`. For the result this is the same verdict as validating the whole object, given that the
base passes (the tests prove that for every accepted job).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

import jsonschema

from .merge import merge_key

Path = list[str | int]

#: The keywords that describe an object's or a list's children: the walk applies them child by child.
_CHILDREN = ("properties", "additionalProperties", "patternProperties", "items", "prefixItems")
#: Keywords that validate nothing here (annotations; `format` asserts nothing without a format checker, as in
#: jsonschema's default, and the API server's own formats are not this check's business).
_NOTES = frozenset({"description", "default", "format", "title", "example", "examples", "$comment", "nullable",
                    "deprecated", "readOnly", "writeOnly"})
#: The keywords the quick path decides itself; a node with any other keyword is left to jsonschema.
_QUICK = frozenset({"type", "enum", "required", "pattern"})
#: Keywords that combine schemas or match fields by pattern: a node with one is validated whole (the walk cannot
#: split it).
_COMBINED = ("anyOf", "oneOf", "allOf", "not", "patternProperties", "prefixItems")
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


@dataclass(eq=False, slots=True)
class _Node:
    """What the walk needs of one schema node, worked out once per node (its $ref followed)."""

    schema: dict[str, Any]
    #: "object" or "array": walked child by child; "value": validated whole (a scalar's node, combined schemas).
    walk: str
    #: The node's own keywords are only type, enum and required: the walk decides them itself.
    quick: bool
    types: tuple[Any, ...]
    required: tuple[str, ...]
    properties: dict[str, Any]
    #: The schema of fields not in properties: a node, {} for any value, None where they are not declared.
    extra: Any
    #: A field the node does not declare is an error (additionalProperties: false, or a pruning schema).
    refuses_unknown: bool
    pattern: re.Pattern[str] | None = None
    #: For anyOf/oneOf of plain nodes (a quantity, an int-or-string): ("anyOf" or "oneOf", the branches).
    choice: tuple[str, tuple["_Node", ...]] | None = None


@dataclass(eq=False)
class SchemaCheck:
    """A schema to hold changed parts of an object to.

    `strict_unknown`: a field the schema does not declare is an error even where the schema does not say
    additionalProperties: false, because the API server would prune it (structural CRD schemas); core/v1's strict
    schemas say it themselves."""

    name: str
    schema: dict[str, Any]
    validator_class: type[Any] = jsonschema.Draft4Validator
    strict_unknown: bool = False
    _root: Any = field(init=False, repr=False)
    _nodes: dict[int, tuple[Any, _Node]] = field(init=False, repr=False, default_factory=dict)
    _validators: dict[tuple[int, bool], tuple[Any, Any]] = field(init=False, repr=False, default_factory=dict)
    _fields_only: Callable[[Path], bool] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._root = self.validator_class(self.schema)

    def changes(self, base: Any, result: Any, path: Path | None = None,
                fields_only: Callable[[Path], bool] | None = None) -> list[tuple[Path, str]]:
        """(path, message) of every error in the parts of `result` that are not `base`'s own (by identity). Below a
        path `fields_only` accepts, only fields the schema does not declare are errors: the caller checks the values
        there against another schema (the pods of an MPIJob against core/v1, whose types the CRD's embedded pod schema
        repeats; what only the CRD can say there is which fields the API server would drop)."""
        found: list[tuple[Path, str]] = []
        self._fields_only = fields_only
        self._walk(self.schema, base, result, list(path or []), found)
        return found

    def _node(self, raw: dict[str, Any]) -> _Node:
        known = self._nodes.get(id(raw))
        if known is not None:
            return known[1]
        node, seen = raw, 0
        while "$ref" in node and seen < 32:  # a local $ref followed, its siblings kept
            target: Any = self.schema
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            seen += 1
        combined = any(k in node for k in _COMBINED)
        kinds = node.get("type")
        named = kinds if isinstance(kinds, list) else [kinds] if kinds else []
        walk = ("value" if combined else "array" if isinstance(node.get("items"), dict) else
                "object" if "object" in named or "properties" in node else "value")
        keywords = {k for k in node if not k.startswith("x-kubernetes-")} - _NOTES - set(_CHILDREN)
        types = tuple(_TYPES[k] for k in named if k in _TYPES)
        extra = node.get("additionalProperties")
        if not isinstance(extra, dict):
            open_ = extra is True or node.get("x-kubernetes-preserve-unknown-fields") or (
                "properties" not in node and extra is None)
            extra = {} if open_ else None
        refuses = node.get("additionalProperties") is False or (
            self.strict_unknown and "properties" in node and extra is None)
        choice = None
        for combination in ("anyOf", "oneOf"):
            if combined and isinstance(node.get(combination), list) and not set(node) & (set(_COMBINED) - {combination}):
                branches = tuple(self._node(b) for b in node[combination] if isinstance(b, dict))
                if len(branches) == len(node[combination]) and all(b.quick and b.walk == "value" and b.choice is None
                                                                   for b in branches):
                    choice = (combination, branches)
                    keywords.discard(combination)
        pattern = node.get("pattern")
        made = _Node(node, walk, keywords <= _QUICK and len(types) == len(named) and (not combined or choice is not None),
                     types, tuple(node.get("required") or ()), node.get("properties") or {}, extra, refuses,
                     re.compile(pattern) if isinstance(pattern, str) else None, choice)
        self._nodes[id(raw)] = (raw, made)  # (raw kept alive: its id stays its own)
        return made

    def _validator(self, node: _Node, own: bool) -> Any:
        """jsonschema's validator of a node: its own keywords only (`own`), or the whole node."""
        got = self._validators.get((id(node), own))
        if got is None:
            schema = {k: v for k, v in node.schema.items() if k not in _CHILDREN} if own else node.schema
            got = self._validators[(id(node), own)] = (self._root.evolve(schema=schema), node)
        return got[0]

    @staticmethod
    def _passes_quickly(node: _Node, value: Any) -> bool:
        """Whether `value` surely passes `node`'s own keywords (for an object or a list: not its children's, which the
        walk takes one by one), decided without jsonschema where the node has only type, enum and required: most of a
        Pod's nodes, and the bulk of the walk's cost otherwise. False means: ask jsonschema (its verdict, its words)."""
        if not node.quick:
            return False
        if node.types:
            for accepts in node.types:
                if accepts(value):
                    break
            else:
                return False
        if "enum" in node.schema and value not in node.schema["enum"]:
            return False
        if node.pattern is not None and isinstance(value, str) and not node.pattern.search(value):
            return False
        if node.choice is not None:
            passing = sum(1 for branch in node.choice[1] if SchemaCheck._passes_quickly(branch, value))
            if passing == 0 or (node.choice[0] == "oneOf" and passing > 1):
                return False
        return not (node.required and isinstance(value, dict) and any(k not in value for k in node.required))

    def _errors(self, validator: Any, value: Any, path: Path, found: list[tuple[Path, str]]) -> None:
        for error in validator.iter_errors(value):
            at = path + list(error.absolute_path)
            if error.validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
                declared = error.schema.get("properties") or {}  # (each field named where it is, as the walk does)
                found.extend((at + [key], self._unknown(error.schema, key)) for key in error.instance if key not in declared)
            else:
                found.append((at, error.message))

    def _walk(self, raw: Any, base: Any, result: Any, path: Path, found: list[tuple[Path, str]],
              fields: bool = False) -> None:
        """Check what changed below `path` (with `fields`: only its fields' names)."""
        if result is base or not isinstance(raw, dict):
            return
        node = self._node(raw)
        if not fields and self._fields_only is not None and self._fields_only(path):
            fields = True
        if node.walk == "object" and isinstance(result, dict):
            before = base if isinstance(base, dict) else {}  # (a new object: every field of it is new)
            if not fields and not self._passes_quickly(node, result):
                self._errors(self._validator(node, own=True), result, path, found)
            for key, value in result.items():
                if key in before and before[key] is value:
                    continue
                child = node.properties.get(key, node.extra)
                if child is None:
                    if node.refuses_unknown:
                        found.append((path + [key], self._unknown(node.schema, key)))
                    continue
                self._walk(child, before.get(key), value, path + [key], found, fields)
        elif node.walk == "array" and isinstance(result, list):
            before_items = base if isinstance(base, list) else []
            if not fields and not self._passes_quickly(node, result):
                self._errors(self._validator(node, own=True), result, path, found)
            earlier = {id(item) for item in before_items}
            items = node.schema["items"]
            key = merge_key(path[-1]) if before_items and path and isinstance(path[-1], str) else None
            for index, item in enumerate(result):
                if id(item) not in earlier:
                    self._walk(items, _counterpart(before_items, item, key), item, path + [index], found, fields)
        elif fields:
            if self.strict_unknown:
                self._pruned(node.schema, result, path, found)
        else:
            if isinstance(result, (dict, list)) or not self._passes_quickly(node, result):
                self._errors(self._validator(node, own=False), result, path, found)
            if self.strict_unknown:
                self._pruned(node.schema, result, path, found)

    def _pruned(self, raw: Any, value: Any, path: Path, found: list[tuple[Path, str]]) -> None:
        """The fields a pruning schema would drop from a value validated whole."""
        if not isinstance(raw, dict):
            return
        node = self._node(raw)
        if isinstance(value, dict):
            for key, item in value.items():
                child = node.properties.get(key, node.extra)
                if child is None:
                    if node.refuses_unknown:
                        found.append((path + [key], self._unknown(node.schema, key)))
                else:
                    self._pruned(child, item, path + [key], found)
        elif isinstance(value, list) and isinstance(node.schema.get("items"), dict):
            for index, item in enumerate(value):
                self._pruned(node.schema["items"], item, path + [index], found)

    def _unknown(self, node: dict[str, Any], key: str) -> str:
        close = difflib.get_close_matches(key, list(node.get("properties") or {}), n=1)
        dropped = ": the API server would drop it" if self.strict_unknown else ""
        return f"{key!r} is not a field of {self.name} here{dropped}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _counterpart(base: list[Any], item: Any, key: str | None) -> Any:
    """The base item a changed list item came from: the one with the same merge `key` (name, containerPort, ...)."""
    if key is None or not isinstance(item, dict):
        return None
    return next((old for old in base if isinstance(old, dict) and old.get(key) == item.get(key)), None)


@lru_cache(maxsize=1)
def pod_template_check() -> SchemaCheck:
    """core/v1 PodTemplateSpec, strict (api/schemas/podtemplatespec-v1.json, vendored from Kubernetes' own)."""
    text = resources.files("bert_operator.api").joinpath("schemas", "podtemplatespec-v1.json").read_text(encoding="utf-8")
    return SchemaCheck("core/v1 PodTemplateSpec", json.loads(text), jsonschema.Draft202012Validator)


#: The MPIJob version the operator renders (render/templates/mpijob.yaml.j2's apiVersion).
MPIJOB_VERSION = "v2beta1"
MPIJOB_CRD = "mpijobs.kubeflow.org"


def mpijob_check(crd: dict[str, Any]) -> SchemaCheck:
    """The check of an MPIJob CRD object's schema for the version the operator renders; ValueError when it has none
    (an MPI Operator too old or too new for this operator)."""
    for version in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(version, dict) and version.get("name") == MPIJOB_VERSION:
            schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
            if isinstance(schema, dict):
                return SchemaCheck(f"MPIJob {MPIJOB_VERSION}", schema, jsonschema.Draft4Validator, strict_unknown=True)
    raise ValueError(f"CustomResourceDefinition {MPIJOB_CRD} serves no {MPIJOB_VERSION} with a schema")
