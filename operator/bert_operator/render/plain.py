"""Templates rendered once per object, not per job start: plain Jinja and YAML, no skeleton cache.

The MPIJob's template is rendered at every job start and has its own cached path (``render/__init__.py``); the
objects made once in a job's life (its InferenceService, its sweep's cleanup Job) are rendered here, with the same
rules: every value prepared in Python and placed as JSON (valid YAML for any string), undefined values an error.
"""

from __future__ import annotations

from typing import Any

import jinja2
import yaml

from . import _LOADER, yaml_json

_ENVIRONMENT: list[jinja2.Environment] = []


def _environment() -> jinja2.Environment:
    if not _ENVIRONMENT:
        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("bert_operator.render", "templates"), undefined=jinja2.StrictUndefined,
            autoescape=False, keep_trailing_newline=True, auto_reload=False)
        environment.filters["tojson"] = yaml_json
        _ENVIRONMENT.append(environment)
    return _ENVIRONMENT[0]


def render_text(template: str, values: dict[str, Any]) -> str:
    """The YAML text of `template` (a file in render/templates) with `values` placed."""
    return _environment().get_template(template).render(**values)


def load(text: str) -> dict[str, Any]:
    """A rendered text as the object it describes."""
    document: dict[str, Any] = yaml.load(text, Loader=_LOADER)
    return document
