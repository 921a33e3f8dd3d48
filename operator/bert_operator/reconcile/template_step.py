"""The plan's step for a stage to create: its MPIJob with the job's templates, or why it waits or fails.

A job's templates (spec.templates, with those its policies force first: policy.py) come from the platform's
catalog as it was when this reconcile began (Observed.templates): the current version of each, but for a stage
made again after an automatic restart, which keeps the versions its first MPIJob had while the catalog still knows
them. A name the catalog lacks, or cannot read, holds the stage (Ready=False TemplateUnavailable): a job never runs
without a template its platform forces, and a broken ConfigMap holds only the jobs that need it. So does an MPIJob
CRD the operator cannot read: a templated MPIJob is created only once checked against it. An MPIJob the
templates' checks refuse fails the stage before anything is created (Failed TemplateInvalid, naming the template,
its line and the field). The templates used are written on the MPIJob (an annotation), and follow.py copies them
into the stage's status.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import reasons
from .. import status as sm
from ..api import BertTrainingJob
from ..api.stages import Stage
from ..policy import PoliciesUnreadable, selecting
from ..render import render_mpijob, render_values
from ..render.values import TEMPLATES_ANNOTATION, template_values
from ..templates import TemplateInvalid, apply_overlays, overlay_context
from ..templates.catalog import MPIJOB_SCHEMA, Unavailable
from ..templates.schema import SchemaCheck
from ..templates.overlay import Overlay
from .decisions import Context, CreateMPIJob, Followed, Held
from .status_view import COMPLETION_TIME, PHASE, STAGE_TEMPLATES


def create(ctx: Context, job: BertTrainingJob, stage: Stage, entry: dict[str, Any]) -> CreateMPIJob | Followed | Held:
    """The stage's MPIJob with the job's templates applied and checked."""
    names = list(job.spec.templates)
    if not names:
        return CreateMPIJob(stage.name, render_mpijob(job, stage, ctx.settings))
    catalog = ctx.observed.templates or {}
    recorded = {ref.partition("@")[0]: ref for ref in entry.get(STAGE_TEMPLATES) or [] if isinstance(ref, str)}
    found = [_version(catalog, name, recorded.get(name)) for name in names]
    waiting = [f"template {name!r}: " + (got.reason if isinstance(got, Unavailable) else
                                         "no ConfigMap in the operator's namespace has it")
               for name, got in zip(names, found) if not isinstance(got, Overlay)]
    schema = catalog.get(MPIJOB_SCHEMA)  # (absent where no cluster is: local mode)
    if isinstance(schema, Unavailable):
        waiting.append(schema.reason)
    if waiting:
        return Held(reasons.TEMPLATE_UNAVAILABLE, f"waiting to create MPIJob {stage.mpijob_name(job.metadata.name)} "
                                                  f"until the platform provides its templates: {'; '.join(waiting)}")
    overlays = [got for got in found if isinstance(got, Overlay)]
    refs = [overlay.ref for overlay in overlays]
    values = template_values(job, stage, ctx.settings)
    try:
        body = apply_overlays(render_values(values), overlays, overlay_context(job, stage, values),
                              level=ctx.settings.pod_security, allowed_images=_allowed_images(ctx),
                              mpijob_schema=schema if isinstance(schema, SchemaCheck) else None)
    except TemplateInvalid as exc:
        return Followed(sm.StagePhase("Failed", reasons.TEMPLATE_INVALID, f"not created: {exc}"),
                        {**entry, PHASE: "Failed", COMPLETION_TIME: ctx.now, STAGE_TEMPLATES: refs})
    meta = body["metadata"]  # (a new object: the merged MPIJob may share its metadata with the base)
    body = {**body, "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}),
                                                          TEMPLATES_ANNOTATION: ",".join(refs)}}}
    return CreateMPIJob(stage.name, body)


def _version(catalog: Mapping[str, Any], name: str, recorded: str | None) -> Any:
    """The template to make a stage with: the version it was made with before (its MPIJob deleted for an automatic
    restart) while the catalog still knows it (as name@version), else the current one (an Unavailable, or None)."""
    earlier = catalog.get(recorded) if recorded else None
    return earlier if isinstance(earlier, Overlay) else catalog.get(name)


def _allowed_images(ctx: Context) -> list[list[str]]:
    """Each selecting policy's allowedImages (an image a template adds must match one glob of each)."""
    given = ctx.observed.policy
    if given is None or isinstance(given, PoliciesUnreadable):
        return []
    return [list(p.spec.limits.allowed_images) for p in selecting(given.policies, given.labels)
            if p.spec.limits.allowed_images is not None]
