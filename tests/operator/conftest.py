"""The operator tests' fixtures: the one `cluster` a test talks to, and the clock of the reconciler fakes.

A module picks what `cluster` is by what it declares:

- nothing: a fresh recording FakeCluster (tests/operator/fakes.py) per test, or the class named by the module's
  `FAKE` (e.g. KueueCluster);
- `EMULATED = {...}`: the module's emulated API server behind the strict layer (tests/operator/cluster.py,
  `strict_cluster`, which takes the dict as keyword arguments), started once for the module; module-scoped
  fixtures (an operator process, say) ask for `emulated`, the same object.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.operator.fakes import Clock, FakeCluster


@pytest.fixture()
def cluster(request: pytest.FixtureRequest) -> Any:
    if hasattr(request.module, "EMULATED"):
        return request.getfixturevalue("emulated")
    return getattr(request.module, "FAKE", FakeCluster)()


@pytest.fixture(scope="module")
def emulated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.operator.cluster import strict_cluster

    with strict_cluster(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
                        **request.module.EMULATED) as running:
        yield running


@pytest.fixture()
def clock() -> Clock:
    return Clock()
