"""Strategic merge of a patch onto a rendered MPIJob, as `kubectl patch --type strategic` merges pod fields.

Why not a JSON merge patch: a platform's overlay adds a sidecar, an environment variable or a volume to lists the
operator already fills (containers, env, volumes, volumeMounts); a JSON merge patch replaces a list whole, so every
overlay would have to repeat the operator's entries. Kubernetes merges those lists by a key (its
``x-kubernetes-patch-merge-key``): a patch item whose key matches an item is merged into it, a new key is appended.
This module does that for the lists of core/v1 pods that carry a merge key; every other list is replaced, and a
``null`` value removes a field, as in a strategic merge patch. (``$patch`` directives are not supported: an overlay
cannot remove what the operator renders anyway, see checks.py.)
"""

from __future__ import annotations

import copy
from typing import Any

#: List fields merged by a key, with the key: core/v1's patch merge keys for the fields of pods and containers.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
}


def merge_key(field: str) -> str | None:
    """The key the list field `field` is merged by, or None (the list is replaced)."""
    return MERGE_KEYS.get(field)


def strategic_merge(target: Any, patch: Any) -> Any:
    """`target` with `patch` merged in. Neither is changed: the result is new along the paths the patch reaches and
    shares the target's untouched parts (copying the whole MPIJob per overlay was most of an overlay's cost); the
    patch's own values are copied, so the result shares nothing with it."""
    return _merge(target, patch, None)


def _merge(target: Any, patch: Any, field: str | None) -> Any:
    if isinstance(patch, dict) and isinstance(target, dict):
        merged = dict(target)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = _merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    key = merge_key(field) if field else None
    if key and isinstance(patch, list) and isinstance(target, list):
        items = list(target)
        for item in patch:
            at = next((i for i, old in enumerate(items) if isinstance(item, dict) and isinstance(old, dict)
                       and key in item and old.get(key) == item[key]), None)
            if at is None:
                items.append(copy.deepcopy(item))
            else:
                items[at] = _merge(items[at], item, None)
        return items
    return copy.deepcopy(patch)
