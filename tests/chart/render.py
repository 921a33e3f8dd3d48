"""The chart rendered by the real Helm engine (helm-python-sdk), as Kubernetes objects."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from tests.conftest import REPO

CHART = REPO / "charts" / "bert-operator"
RELEASE, NAMESPACE = "bert-operator", "bert-operator"
#: Where the chart sends BertTrainingPolicy admission reviews: kopf's path for the operator's handler id
#: validate-berttrainingpolicy (as /validate-berttrainingjob is bert_operator.webhook.PATH).
POLICY_WEBHOOK_PATH = "/validate-berttrainingpolicy"


@lru_cache(maxsize=1)
def chart() -> Any:
    import helm_python

    return helm_python.Chart.load(CHART)


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template bert-operator charts/bert-operator -n <namespace>`."""
    return chart().render(values, name=RELEASE, namespace=namespace, is_install=True)


def objects(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object the chart's templates render (NOTES.txt excluded), in template order."""
    found = []
    for path, text in sorted(render(values, namespace).items()):
        if path.endswith(".txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def crd_objects() -> list[dict[str, Any]]:
    return [yaml.safe_load(entry["data"]) for entry in chart().crds]


def notes(values: dict[str, Any] | None = None) -> str:
    return render(values)[f"{RELEASE}/templates/NOTES.txt"]


def kind(found: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    return [obj for obj in found if obj["kind"] == wanted]


def one(found: list[dict[str, Any]], wanted: str, name: str = RELEASE) -> dict[str, Any]:
    """The one object of kind `wanted` named `name` (default the release's: the operator's own ClusterRole, say,
    among the tenant roles)."""
    [obj] = [obj for obj in kind(found, wanted) if obj["metadata"]["name"] == name]
    return obj
