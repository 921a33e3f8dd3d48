"""Rendering: a validated BertTrainingJob to the MPIJobs that run it. Pure functions, no I/O."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jinja2
import yaml

from ..api.models import BertTrainingJob
from ..api.stages import Stage
from ..tasks import stages_of
from .values import RenderSettings, template_values

__all__ = ["RenderSettings", "render_mpijob", "render_all"]

#: libyaml's loader when PyYAML was built with it: parsing is most of rendering's cost.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: A UTF-16 surrogate pair as json.dumps escapes a character beyond the BMP, not itself behind an escaped backslash.
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _astral(match: re.Match[str]) -> str:
    high, low = int(match[2], 16) - 0xD800, int(match[3], 16) - 0xDC00
    return f"{match[1]}\\U{0x10000 + (high << 10) + low:08x}"


def yaml_json(value: Any) -> str:
    """`value` as JSON that is also valid YAML, for any string (keys sorted, as Jinja's own tojson): ASCII only, with a character beyond the BMP (an
    emoji in an annotation) as YAML's \\UXXXXXXXX instead of JSON's surrogate pair, which YAML parsers refuse."""
    return _SURROGATE_PAIR.sub(_astral, json.dumps(value, ensure_ascii=True, sort_keys=True))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("bert_operator.render", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    environment.filters["tojson"] = yaml_json
    return environment


def render_mpijob(job: BertTrainingJob, stage: Stage, settings: RenderSettings | None = None) -> dict[str, Any]:
    """The MPIJob for one stage of `job`."""
    values = template_values(job, stage, settings or RenderSettings())
    text = _environment().get_template("mpijob.yaml.j2").render(**values)
    return yaml.load(text, Loader=_LOADER)


def render_all(job: BertTrainingJob, settings: RenderSettings | None = None) -> list[dict[str, Any]]:
    """The MPIJobs of every stage of `job`, in the order they run."""
    return [render_mpijob(job, stage, settings) for stage in stages_of(job.spec)]
