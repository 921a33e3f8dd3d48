"""Shared fixtures: the repository's examples and the real schemas rendered objects must satisfy."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
MPIJOB_CRD = REPO.parent / "shared" / "crds" / "kubeflow.org_mpijobs.yaml"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
