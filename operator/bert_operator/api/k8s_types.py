"""Kubernetes core types a spec embeds, checked against Kubernetes' own schema (vendored.py).

`spec.resources.affinity` is passed to the pods as is, so it must be a real
core/v1 Affinity: the API server refuses the MPIJob otherwise, long after
`kubectl apply` said yes. The schema is Kubernetes' (kubernetes-validate's strict
JSON schema, its references inlined by scripts/vendor-k8s-schema.py); the
same file becomes the CRD's schema for the field, so the API server checks it too.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .errors import FieldError, format_path, shown
from .vendored import schema

_TYPE_WORDS = {"object": "an object (mapping)", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false"}


@lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    import jsonschema  # noqa: PLC0415 - only specs that set the field pay for the import

    return jsonschema.Draft202012Validator(schema(name))


def _sentence(error: Any) -> str:
    """jsonschema's message in this API's words: what is allowed, then what was given."""
    got = shown(error.instance)
    if error.validator == "type":
        kinds = [k for k in ([error.validator_value] if isinstance(error.validator_value, str) else error.validator_value)
                 if k != "null"]
        return f"must be {' or '.join(_TYPE_WORDS.get(k, k) for k in kinds)}, got {got}"
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted((error.schema.get("properties") or {}).keys()))
        return f"unknown field; allowed fields here: {allowed}"
    if error.validator == "required":
        return f"required field {error.message.split(' ')[0]} is missing"
    if error.validator == "enum":
        return f"must be one of {error.validator_value}, got {got}"
    return error.message[:300]


def type_errors(name: str, value: Any, path: str) -> list[FieldError]:
    """Every way `value` is not the Kubernetes type of schema `name`, each under its own path below `path`."""
    errors = []
    for error in sorted(_validator(name).iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        where = format_path([*path.split("."), *error.absolute_path]) if error.absolute_path else path
        errors.append(FieldError(where, _sentence(error)))
    return errors[:20]
