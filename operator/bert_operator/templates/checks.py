"""What an MPIJob with overlays must still be: everything the operator rendered kept, no GPU added, images a policy
allows, valid for the MPIJob CRD and core/v1 (schema.py), the pod security level the platform runs, and the shape of a
pod.

Why "kept" rather than a list of forbidden fields: the operator's rendering is what the job's spec, its policies
and the security promises made it (the command mpirun runs, the image, the GPUs Kueue admitted, the non-root
security context, the S3 credentials' environment). An overlay is for what no spec field covers, so it may add
anything (a sidecar, an environment variable, a volume, a device request, an annotation, a node selector the job
did not set) and change nothing the operator set. Lists merged by a key (containers, env, volumes, ...) keep each
of the operator's items; other lists (a command, tolerations the job set) must stay as they are.

Each finding is a (path, message) pair; the path is a list of keys and indexes into the MPIJob, so the caller can
point into the overlay that set it.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterator

from .. import pod_security
from .merge import merge_key
from .schema import SchemaCheck, pod_template_check

Path = list[str | int]
#: Extended resources that are accelerators: an overlay never adds or changes them (GPUs are the job's and its
#: policy's, and what Kueue admitted).
ACCELERATOR_MARKERS = ("gpu", "nvidia.com/", "amd.com/", "habana.ai/", "aws.amazon.com/neuron", "google.com/tpu")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def kept(base: Any, result: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Where `result` does not keep a value of `base` (a field changed or removed)."""
    if isinstance(base, dict):
        if not isinstance(result, dict):
            yield path, "the operator renders an object here; an overlay cannot replace it"
            return
        for key, value in base.items():
            if key not in result:
                yield path + [key], "the operator renders this field; an overlay cannot remove it"
            else:
                yield from kept(value, result[key], path + [key])
        return
    key = merge_key(str(path[-1])) if path and isinstance(path[-1], str) else None
    if isinstance(base, list) and key and isinstance(result, list):
        for item in base:
            at = next((i for i, new in enumerate(result) if isinstance(item, dict) and isinstance(new, dict)
                       and new.get(key) == item.get(key)), None)
            if at is None:
                yield path, f"the operator's item {key}={item.get(key)!r} was removed"
            else:
                yield from kept(item, result[at], path + [at])
        return
    if base != result:
        yield path, "the operator renders this value; an overlay cannot change it"


def _is_accelerator(resource: str) -> bool:
    return any(marker in resource.lower() for marker in ACCELERATOR_MARKERS)


def _pod_templates(mpijob: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for replica, spec in ((mpijob.get("spec") or {}).get("mpiReplicaSpecs") or {}).items():
        template = (spec or {}).get("template")
        if isinstance(template, dict):
            yield ["spec", "mpiReplicaSpecs", replica, "template"], template


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, int, Any]]:
    for kind in _CONTAINER_LISTS:
        items = pod.get(kind)
        for index, container in enumerate(items if isinstance(items, list) else []):
            yield kind, index, container


def shape(mpijob: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """The pod fields the checks below and the API server rely on, with the types core/v1 gives them (the full
    schema is the API server's; this catches what would make the checks misread a pod)."""
    for at, template in _pod_templates(mpijob):
        pod = template.get("spec")
        if not isinstance(pod, dict):
            yield at + ["spec"], "must be an object (a pod spec)"
            continue
        for kind, index, container in _containers(pod):
            where = at + ["spec", kind, index]
            if not isinstance(container, dict):
                yield where, "must be an object (a container)"
                continue
            for field in ("name", "image"):
                if not isinstance(container.get(field), str) or not container[field]:
                    yield where + [field], "must be a non-empty string"
            for field in ("env", "volumeMounts", "ports"):
                if field in container and not (isinstance(container[field], list)
                                               and all(isinstance(i, dict) for i in container[field])):
                    yield where + [field], "must be a list of objects"
            resources = container.get("resources", {})
            if not isinstance(resources, dict) or not all(isinstance(resources.get(k, {}), dict) for k in ("requests", "limits")):
                yield where + ["resources"], "must be an object of requests and limits"
        for field in ("volumes", "initContainers", "containers"):
            if field in pod and not isinstance(pod[field], list):
                yield at + ["spec", field], "must be a list"
        for index, volume in enumerate(pod.get("volumes") or []):
            if not isinstance(volume, dict) or not isinstance(volume.get("name"), str):
                yield at + ["spec", "volumes", index], "must be an object with a name"


def _resources(mpijob: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Path, Any]]:
    """(which: pod, container kind and name, requests or limits, resource; its path; the amount) of every container."""
    for at, template in _pod_templates(mpijob):
        for kind, index, container in _containers(template.get("spec") or {}):
            if not isinstance(container, dict):
                continue
            for part in ("requests", "limits"):
                for resource, amount in ((container.get("resources") or {}).get(part) or {}).items():
                    yield ((tuple(at), kind, container.get("name"), part, resource),
                           at + ["spec", kind, index, "resources", part, resource], amount)


def accelerators(base: dict[str, Any], result: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """An accelerator request or limit the operator did not render (on any container, a new one included)."""
    rendered = {which: amount for which, _, amount in _resources(base)}
    for which, path, amount in _resources(result):
        if _is_accelerator(which[-1]) and rendered.get(which) != amount:
            yield path, "an overlay cannot add or change accelerators: GPUs are the job's spec and its policy's"


def images(base: dict[str, Any], result: dict[str, Any], allowed: list[list[str]]) -> Iterator[tuple[Path, str]]:
    """Images of containers an overlay added that the policies' allowedImages do not allow: an image must match a glob
    of each list (one list per policy that sets one; none: any image)."""
    if not allowed:
        return
    rendered = {container.get("image") for _, template in _pod_templates(base)
                for _, _, container in _containers(template.get("spec") or {})}
    for at, template in _pod_templates(result):
        for kind, index, container in _containers(template.get("spec") or {}):
            image = container.get("image") if isinstance(container, dict) else None
            if not isinstance(image, str) or image in rendered:
                continue
            for globs in allowed:
                if not any(fnmatch.fnmatchcase(image, glob) for glob in globs):
                    yield (at + ["spec", kind, index, "image"],
                           f"image {image!r} is not allowed by the policy (allowedImages: {', '.join(globs)})")
                    break


def pod_security_level(result: dict[str, Any], level: str) -> Iterator[tuple[Path, str]]:
    """What PodSecurity admission at `level` would refuse in each pod template."""
    for at, template in _pod_templates(result):
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        for violation in pod_security.check(level, template.get("spec") or {}, annotations):
            yield at + _parts(violation.path), f"PodSecurity {level}: {violation}"


def _parts(path: str) -> Path:
    """`containers[1].securityContext.privileged` -> ["spec", "containers", 1, "securityContext", "privileged"]."""
    if path == "metadata.annotations":
        return ["metadata", "annotations"]
    parts: Path = ["spec"]
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.lstrip("[")
    return parts


def _is_pod_template(path: Path) -> bool:
    """spec.mpiReplicaSpecs.<replica>.template: below it core/v1 checks the values."""
    return len(path) == 4 and path[3] == "template" and path[1] == "mpiReplicaSpecs"


def schemas(base: dict[str, Any], result: dict[str, Any], mpijob: SchemaCheck | None) -> Iterator[tuple[Path, str]]:
    """What the overlays changed that the MPIJob CRD's schema (when known) or core/v1's Pod schema refuses."""
    if mpijob is not None:
        yield from mpijob.changes(base, result, fields_only=_is_pod_template)
    pods = pod_template_check()
    before = dict((tuple(at), template) for at, template in _pod_templates(base))
    for at, template in _pod_templates(result):
        yield from pods.changes(before.get(tuple(at)), template, at)


def findings(base: dict[str, Any], result: dict[str, Any], *, level: str, allowed_images: list[list[str]],
             mpijob_schema: SchemaCheck | None = None) -> list[tuple[Path, str]]:
    """Every reason `result` (base with overlays) cannot be created; empty when it can."""
    found = list(shape(result))
    if found:
        return found
    found += kept(base, result, [])
    found += accelerators(base, result)
    found += images(base, result, allowed_images)
    found += schemas(base, result, mpijob_schema)
    found += pod_security_level(result, level)
    return found
