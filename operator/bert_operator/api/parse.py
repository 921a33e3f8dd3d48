"""From YAML text or an API object to a validated BertTrainingJob.

The CLI, the operator and the webhook all call :func:`parse_job`, so a spec
is judged the same way wherever it enters.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from . import rules
from .errors import FieldError, SpecError, from_validation_error
from .models import BertTrainingJob


def parse_job(document: Any, source: str | None = None) -> BertTrainingJob:
    """Validate one document; raise SpecError listing every field error."""
    if not isinstance(document, dict):
        raise SpecError([FieldError("<document>", f"must be a mapping (a BertTrainingJob), got {type(document).__name__}")], source)
    try:
        job = BertTrainingJob.model_validate(document)
    except ValidationError as exc:
        raise SpecError(from_validation_error(exc, BertTrainingJob), source) from None
    errors = rules.check(job)
    if errors:
        raise SpecError(errors, source)
    return job


def load_documents(text: str, source: str) -> list[Any]:
    """Every non-empty YAML document in `text`; YAML syntax errors become a SpecError with line and column."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([FieldError("<yaml>", f"invalid YAML at {where}: {problem}")], source) from None
    if not documents:
        raise SpecError([FieldError("<yaml>", "no document found; expected a BertTrainingJob")], source)
    return documents


def parse_text(text: str, source: str) -> list[BertTrainingJob]:
    """All jobs of a (multi-document) YAML text; errors name the document index when there are several."""
    documents = load_documents(text, source)
    jobs, errors = [], []
    for index, document in enumerate(documents):
        label = source if len(documents) == 1 else f"{source}[{index}]"
        try:
            jobs.append(parse_job(document, label))
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise SpecError([error for exc in errors for error in exc.errors])
    return jobs
