"""Kubernetes' own JSON schemas for the core types a spec embeds, shipped in schemas/ (see scripts/vendor-k8s-schema.py).

Loaded by the models (the CRD's schema for those fields) and by k8s_types (the
check the CLI, webhook and operator run), so both use the same file.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=None)
def schema(name: str) -> dict[str, Any]:
    """A vendored schema by file stem, e.g. 'affinity-v1'."""
    text = resources.files(__package__).joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)
