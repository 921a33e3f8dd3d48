"""Rendering: a validated BertTrainingJob to the MPIJobs that run it. Pure functions, no I/O."""

from __future__ import annotations

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


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bert_operator.render", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def render_mpijob(job: BertTrainingJob, stage: Stage, settings: RenderSettings | None = None) -> dict[str, Any]:
    """The MPIJob for one stage of `job`."""
    values = template_values(job, stage, settings or RenderSettings())
    text = _environment().get_template("mpijob.yaml.j2").render(**values)
    return yaml.load(text, Loader=_LOADER)


def render_all(job: BertTrainingJob, settings: RenderSettings | None = None) -> list[dict[str, Any]]:
    """The MPIJobs of every stage of `job`, in the order they run."""
    return [render_mpijob(job, stage, settings) for stage in stages_of(job.spec)]
