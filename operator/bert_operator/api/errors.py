"""Field errors with a path and a sentence a user can act on.

Pydantic's own messages ("Input should be greater than or equal to 0") say
neither where nor what is allowed in the terms of the YAML the user wrote;
this module turns them into `spec.resources.gpusPerWorker: must be >= 0, got -1`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ValidationError

from .models import PATTERN_MEANINGS


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, addressed by its dotted wire path."""

    path: str
    message: str
    source: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{self.path}: {self.message}"


class SpecError(ValueError):
    """Documents that are not valid BertTrainingJobs; holds every field error found."""

    def __init__(self, errors: Iterable[FieldError], source: str | None = None) -> None:
        self.errors = [error if error.source or not source else replace(error, source=source) for error in errors]
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def format_path(loc: Iterable[str | int]) -> str:
    """`("spec", "tolerations", 0, "key")` -> `spec.tolerations[0].key`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<document>"


#: Characters of an offending value an error line quotes; the rest is counted, not echoed.
SHOWN_CHARACTERS = 200


def shown(value: Any) -> str:
    if isinstance(value, str):
        if len(value) > SHOWN_CHARACTERS:
            return f"{value[:SHOWN_CHARACTERS]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return str(value)


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that owns the field at `loc`, following aliases; None if not a model."""
    current: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next(
            (f for name, f in current.model_fields.items() if part in (name, f.alias)),
            None,
        )
        if field is None:
            return None
        current = _unwrap_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    """The BaseModel inside `X | None` or `list[X]`, else the annotation itself."""
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def allowed_fields(model: type[BaseModel]) -> list[str]:
    """Wire names of a model's fields."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _sentence(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = shown(error.get("input"))
    loc = tuple(error["loc"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        allowed = ", ".join(allowed_fields(owner)) if owner else "none"
        return f"unknown field; allowed fields here: {allowed}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {got}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {got}"
    if kind == "string_type":
        return f"must be a string, got {got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be an object (mapping), got {got}"
    if kind == "list_type":
        return f"must be a list, got {got}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"must be {PATTERN_MEANINGS.get(pattern, 'text matching ' + pattern)}, got {got}"
    if kind in ("too_short", "too_long"):
        return error["msg"].replace("List should", "must").replace("Value should", "must")
    if kind in ("string_too_long", "string_too_short"):
        return f"{error['msg'].replace('String should', 'must')}, got {got}"
    return f"{error['msg']}, got {got}"


def from_validation_error(exc: ValidationError, root: type[BaseModel]) -> list[FieldError]:
    """Every pydantic error of `exc` as a FieldError on its wire path."""
    errors = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        errors.append(FieldError(format_path(loc), _sentence(error, root)))
    return errors
