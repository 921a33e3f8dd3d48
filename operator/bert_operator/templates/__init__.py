"""Job templates a platform owns: overlays on the MPIJobs the operator renders, checked before anything exists.

A platform's overlay (overlay.py: a named, versioned Jinja patch) adds what no job field covers: device requests
(EFA, RDMA), NCCL settings, a log-shipping sidecar, an init container, a read-only volume, mesh annotations. The
operator's template stays the base; :func:`apply_overlays` renders each overlay for the stage, merges it
(merge.py: a strategic merge, as kubectl's), and checks the result (checks.py): everything the operator rendered is
kept, no accelerator is added, added images match the policy's allowedImages, what changed passes the MPIJob CRD's
schema and core/v1's (schema.py), every pod passes the platform's PodSecurity level. The first failure raises
:class:`TemplateInvalid` naming the overlay, the line of its patch that set the field, and the field.

``bertjob render --template FILE`` and ``bertjob validate --template FILE`` run this without a cluster.
"""

from __future__ import annotations

from typing import Any

from ..api.models import BertTrainingJob
from ..api.stages import Stage
from ..render import RenderSettings, render_values
from ..render.values import template_values
from ..tasks import stages_of
from ..api.errors import format_path
from .checks import findings
from .merge import strategic_merge
from .overlay import Overlay, RenderedPatch, TemplateInvalid, parse_overlay, reach, render_patch
from .schema import SchemaCheck

__all__ = ["Overlay", "TemplateInvalid", "apply_overlays", "overlay_context", "parse_overlay", "render_with_overlays"]


def overlay_context(job: BertTrainingJob, stage: Stage, base_values: dict[str, Any]) -> dict[str, Any]:
    """What an overlay's patch sees besides its values: the job as written, the stage, the base template's values."""
    meta = job.metadata
    return {
        "job": {"name": meta.name, "namespace": meta.namespace, "labels": dict(meta.labels or {}),
                "annotations": dict(meta.annotations or {}),
                "spec": job.spec.model_dump(by_alias=True, exclude_none=True, mode="json")},
        "stage": {"name": stage.name, "index": stage.index, "mpijob": stage.mpijob_name(meta.name)},
        "base": base_values,
    }


def apply_overlays(mpijob: dict[str, Any], overlays: list[Overlay], context: dict[str, Any], *,
                   level: str = "restricted", allowed_images: list[list[str]] | None = None,
                   values: dict[str, dict[str, Any]] | None = None,
                   mpijob_schema: SchemaCheck | None = None) -> dict[str, Any]:
    """`mpijob` with each overlay's patch merged in order, once the result passes every check; TemplateInvalid
    otherwise (nothing is changed: the caller creates nothing). `values` overrides an overlay's declared values by
    overlay name; `mpijob_schema` is the cluster's MPIJob CRD (schema.py: the operator reads it, the CLI is given it);
    without it the MPIJob's own fields are not checked, its pods against core/v1 still are."""
    if not overlays:
        return mpijob
    result = mpijob
    patches: list[RenderedPatch] = []
    for overlay in overlays:
        try:
            rendered = render_patch(overlay, context, (values or {}).get(overlay.name))
        except TemplateInvalid as exc:
            raise exc.placed(overlay.patch_offset) from None
        patches.append(rendered)
        result = strategic_merge(result, rendered.patch)
    found = findings(mpijob, result, level=level, allowed_images=allowed_images or [], mpijob_schema=mpijob_schema)
    if found:
        path, message = found[0]
        blamed, line = _blame(patches, path, result)
        raise TemplateInvalid(blamed.overlay.name, message, line=line, field=format_path(path), in_patch=line is not None,
                              patch_offset=blamed.overlay.patch_offset)
    return export_added_env(mpijob, result)


def render_with_overlays(job: BertTrainingJob, overlays: list[Overlay], settings: RenderSettings | None = None, *,
                         level: str = "restricted", allowed_images: list[list[str]] | None = None,
                         mpijob_schema: SchemaCheck | None = None) -> list[dict[str, Any]]:
    """The MPIJobs of every stage of `job`, each with the overlays applied and checked (TemplateInvalid otherwise)."""
    settings = settings or RenderSettings()
    out = []
    for stage in stages_of(job.spec):
        values = template_values(job, stage, settings)
        out.append(apply_overlays(render_values(values), overlays, overlay_context(job, stage, values), level=level,
                                  allowed_images=allowed_images, mpijob_schema=mpijob_schema))
    return out


def _launcher(mpijob: dict[str, Any]) -> dict[str, Any] | None:
    replica = ((mpijob.get("spec") or {}).get("mpiReplicaSpecs") or {}).get("Launcher") or {}
    containers = ((replica.get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c for c in containers if isinstance(c, dict) and c.get("name") == "launcher"), None)


def export_added_env(base: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """`result` with every variable the overlays added to the launcher's environment exported to the ranks.

    Why: ranks are started over ssh and see only what mpirun exports with -x (render/command.py), so an overlay's
    NCCL_* or FI_* on the launcher would otherwise reach mpirun and no rank; on a worker container it reaches that
    pod's own processes (sshd, init containers), not the ranks either. The operator adds the -x flags itself, after
    the checks, as it renders its own."""
    before, after = _launcher(base), _launcher(result)
    if before is None or after is None:
        return result
    known = {item.get("name") for item in before.get("env") or []}
    added = [item["name"] for item in after.get("env") or [] if item.get("name") not in known]
    command = after.get("command") or []
    if not added or "mpirun" not in command:
        return result
    at = next((i for i in range(command.index("mpirun"), len(command)) if command[i] == "-mca"), len(command))
    exported = [*command[:at], *(flag for name in added for flag in ("-x", name)), *command[at:]]
    # (a command is a list without a merge key: the merge replaces it, and copies only the way to it)
    return strategic_merge(result, {"spec": {"mpiReplicaSpecs": {"Launcher": {"template": {"spec": {
        "containers": [{"name": "launcher", "command": exported}]}}}}}})


def _blame(patches: list[RenderedPatch], path: list[str | int], result: dict[str, Any]) -> tuple[RenderedPatch, int | None]:
    """The overlay whose patch reaches deepest into `path` (the later one on a tie: it was merged last) and the line
    it sets it on; the last overlay and no line when none reaches it (a combination of them)."""
    (depth, line), _, blamed = max(((reach(p, path, result), index, p) for index, p in enumerate(patches)),
                                   key=lambda reached: (reached[0][0], reached[1]))
    return blamed, line if depth else None
