"""From YAML text or an API object to a validated BertTrainingJob.

The CLI, the operator and the webhook all call :func:`parse_job`, so a spec
is judged the same way wherever it enters.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from . import rules
from .errors import FieldError, SpecError, format_path, from_validation_error
from .loader import MAX_SCALAR, load_all
from .models import BertTrainingJob

#: The range of a Kubernetes integer (int64): the API server refuses anything outside it.
INT64 = 2**63 - 1
#: Deepest nesting a job may have (a real one is under 15 deep; the affinity types go to about 10).
MAX_DEPTH = 64
#: Path components an error on a too-deep value shows.
SHOWN_DEPTH = 6


def document_errors(document: Any) -> list[FieldError]:
    """What no BertTrainingJob can be, checked on the raw document before the models see it (iteratively, so a
    document nested too deep is named, not a RecursionError): depth, integers beyond int64, over-long strings.

    The same document may come from YAML (the CLI, local mode) or as JSON from the API server (the operator,
    the webhook); this is the check both share."""
    errors: list[FieldError] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack and len(errors) < 20:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:  # named by where it starts, not by its 64-part path
            errors.append(FieldError(format_path(path[:SHOWN_DEPTH]), f"nested deeper than {MAX_DEPTH} levels below here"))
            continue
        if isinstance(value, dict):
            stack.extend((item, (*path, str(key))) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
            errors.append(FieldError(format_path(path), "must fit in a 64-bit integer (at most 19 digits)"))
        elif isinstance(value, str) and len(value) > MAX_SCALAR:
            errors.append(FieldError(format_path(path), f"at most {MAX_SCALAR} characters, got {len(value)}"))
    return sorted(errors, key=lambda error: error.path)


def parse_job(document: Any, source: str | None = None) -> BertTrainingJob:
    """Validate one document; raise SpecError listing every field error."""
    if not isinstance(document, dict):
        raise SpecError([FieldError("<document>", f"must be a mapping (a BertTrainingJob), got {type(document).__name__}")],
                        source)
    # The status is the operator's (and a trainer report's) to write, never input: a number in it that a spec may
    # not hold (one in [2^63, 1e21) comes back from the API server as a long integer) must not make the job invalid.
    shape = document_errors({key: value for key, value in document.items() if key != "status"})
    if shape:
        raise SpecError(shape, source)
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
        documents = [doc for doc in load_all(text) if doc is not None]
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
