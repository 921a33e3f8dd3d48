"""Job templates a platform owns: overlays on the MPIJobs the operator renders, checked before anything exists.

A platform's overlay (overlay.py: a named, versioned Jinja patch) adds what no job field covers: device requests
(EFA, RDMA), NCCL settings, a log-shipping sidecar, an init container, a read-only volume, mesh annotations. The
operator's template stays the base; :func:`apply_overlays` renders each overlay for the stage, merges it
(merge.py: a strategic merge, as kubectl's), and checks the result (checks.py): everything the operator rendered is
kept, no accelerator is added, added images match the policy's allowedImages, every pod passes the platform's
PodSecurity level. The first failure raises :class:`TemplateInvalid` naming the overlay, the line of its patch
that set the field, and the field.

``bertjob render --template FILE`` and ``bertjob validate --template FILE`` run this without a cluster.
"""

from __future__ import annotations

from typing import Any

from ..api.models import BertTrainingJob
from ..api.stages import Stage
from ..render import RenderSettings, render_mpijob
from ..render.values import template_values
from ..tasks import stages_of
from .checks import findings, shown_path
from .merge import strategic_merge
from .overlay import Overlay, RenderedPatch, TemplateInvalid, line_of, parse_overlay, render_patch

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
                   values: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """`mpijob` with each overlay's patch merged in order, once the result passes every check; TemplateInvalid
    otherwise (nothing is changed: the caller creates nothing). `values` overrides an overlay's declared values by
    overlay name."""
    result = mpijob
    patches: list[RenderedPatch] = []
    for overlay in overlays:
        try:
            rendered = render_patch(overlay, context, (values or {}).get(overlay.name))
        except TemplateInvalid as exc:
            raise exc.placed(overlay.patch_offset) from None
        patches.append(rendered)
        result = strategic_merge(result, rendered.patch)
    if not overlays:
        return mpijob
    for path, message in findings(mpijob, result, level=level, allowed_images=allowed_images or []):
        blamed, line = _blame(patches, path, result)
        offset = next(p.overlay.patch_offset for p in patches if p.overlay.name == blamed) if patches else None
        raise TemplateInvalid(blamed, message, line=line, field=shown_path(path), in_patch=line is not None,
                              patch_offset=offset)
    return export_added_env(mpijob, result)


def render_with_overlays(job: BertTrainingJob, overlays: list[Overlay], settings: RenderSettings | None = None, *,
                         level: str = "restricted", allowed_images: list[list[str]] | None = None
                         ) -> list[dict[str, Any]]:
    """The MPIJobs of every stage of `job`, each with the overlays applied and checked (TemplateInvalid otherwise)."""
    settings = settings or RenderSettings()
    out = []
    for stage in stages_of(job.spec):
        context = overlay_context(job, stage, template_values(job, stage, settings))
        out.append(apply_overlays(render_mpijob(job, stage, settings), overlays, context, level=level,
                                  allowed_images=allowed_images))
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
    start = command.index("mpirun")
    at = next((i for i in range(start, len(command)) if command[i] == "-mca"), len(command))
    exported = {**after, "command": [*command[:at], *(flag for name in added for flag in ("-x", name)), *command[at:]]}
    # New objects along the way to the launcher: the result may share its other parts with the base (merge.py).
    replica = result["spec"]["mpiReplicaSpecs"]["Launcher"]
    pod = replica["template"]["spec"]
    containers = [exported if c is after else c for c in pod["containers"]]
    launcher = {**replica, "template": {**replica["template"], "spec": {**pod, "containers": containers}}}
    return {**result, "spec": {**result["spec"], "mpiReplicaSpecs": {**result["spec"]["mpiReplicaSpecs"],
                                                                     "Launcher": launcher}}}


def _blame(patches: list[RenderedPatch], path: list[str | int], result: dict[str, Any]) -> tuple[str, int | None]:
    """The last overlay whose patch reaches `path` (and the line), else the last overlay (a combination of them)."""
    best: tuple[str, int | None, int] | None = None
    for rendered in reversed(patches):
        line = line_of(rendered, path, result)
        if line is not None:
            depth = _reached(rendered, path, result)
            if best is None or depth > best[2]:
                best = (rendered.overlay.name, line, depth)
    if best is None:
        return (patches[-1].overlay.name if patches else "<none>"), None
    return best[0], best[1]


def _reached(rendered: RenderedPatch, path: list[str | int], result: Any) -> int:
    """How many parts of `path` the patch holds (the deepest reach wins the blame)."""
    return max((n for n in range(len(path) + 1) if line_of(rendered, path[:n], result) is not None), default=0)
