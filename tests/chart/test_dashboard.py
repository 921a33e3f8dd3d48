"""The chart's Grafana dashboard: a sidecar ConfigMap only when asked for, whose panels query only what the operator
exports (the names come from bert_operator.metrics, so a renamed metric fails here before a dashboard goes blank)."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import pytest

from bert_operator import metrics
from tests.chart.render import CHART, NAMESPACE, chart, kind, objects
from tests.schemas import object_errors

DASHBOARD = CHART / "dashboards" / "bert-operator.json"
ENABLED = {"grafanaDashboard": {"enabled": True}}
#: The sample names Prometheus stores for each type of metric family.
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def configmaps(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [cm for cm in kind(objects(values), "ConfigMap") if cm["metadata"]["name"] == "bert-operator-dashboard"]


def exported_names() -> set[str]:
    """Every series name the operator's metrics produce, as Prometheus stores them."""
    return {family.name + suffix for metric in metrics.EXPORTED for family in metric.describe()
            for suffix in SUFFIXES[family.type]}


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its template variables' queries."""
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return found + [var["query"]["query"] for var in dashboard["templating"]["list"] if var["type"] == "query"]


def test_no_dashboard_unless_enabled() -> None:
    assert configmaps() == []
    assert not any("grafana" in path for path, text in chart().render(None, name="r", namespace=NAMESPACE).items()
                   if text.strip())


def test_the_configmap_carries_the_sidecar_label_and_the_dashboard_file_unchanged() -> None:
    [configmap] = configmaps(ENABLED)
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in configmap["metadata"]
    assert configmap["data"] == {"bert-operator.json": DASHBOARD.read_text()}
    assert object_errors(configmap) == []


def test_label_namespace_and_annotations_are_configurable() -> None:
    values = {"grafanaDashboard": {"enabled": True, "labelKey": "grafana.example.com/dashboard", "labelValue": "bert",
                                   "namespace": "monitoring", "annotations": {"grafana_folder": "Training"}}}
    [configmap] = configmaps(values)
    meta = configmap["metadata"]
    assert meta["namespace"] == "monitoring" and meta["annotations"] == {"grafana_folder": "Training"}
    assert meta["labels"]["grafana.example.com/dashboard"] == "bert" and "grafana_dashboard" not in meta["labels"]
    assert object_errors(configmap) == []
    report = helm_python.lint(CHART, values, strict=True)
    assert report["messages"] == [] and report["errors"] == [], report


def test_every_panel_queries_only_metrics_the_operator_exports_and_every_training_gauge_is_shown() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    used: set[str] = set()
    for expr in queries(dashboard):
        names = set(re.findall(r"\bbertoperator_[a-z0-9_]+", expr))
        assert names, f"{expr!r} queries none of the operator's metrics"
        assert names <= exported, f"{expr!r} queries {sorted(names - exported)}, which the operator does not export"
        used |= names
    training = {family.name for metric in metrics.EXPORTED for family in metric.describe()
                if family.name.startswith("bertoperator_training_")}
    assert len(training) == 5 and training <= used
    assert {"bertoperator_jobs", "bertoperator_reconcile_duration_seconds_bucket", "bertoperator_api_errors_total",
            "bertoperator_progress_reports_total"} <= used


def test_panels_use_the_datasource_variable_and_filter_training_series_by_namespace_and_job() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["query"]["query"].startswith("label_values(") and '"$namespace"' in variables["job"]["definition"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            if "bertoperator_training_" in target["expr"]:
                assert 'namespace=~"$namespace"' in target["expr"] and 'job=~"$job"' in target["expr"], panel["title"]
    # The label names the panels filter on are the ones the gauges carry.
    assert metrics.STAGE_LABELS == ("namespace", "job", "stage")


@pytest.mark.parametrize("bad, where", [
    ({"grafanaDashboard": {"enabled": "yes"}}, "enabled"),
    ({"grafanaDashboard": {"enabled": True, "labelValue": 1}}, "labelValue"),
    ({"grafanaDashboard": {"enabled": True, "labelKey": "not a label"}}, "labelKey"),
    ({"grafanaDashboard": {"enabled": True, "namespace": "Monitoring"}}, "namespace"),
    ({"grafanaDashboard": {"enabled": True, "folder": "Training"}}, "folder"),
])
def test_values_schema_refuses_bad_dashboard_values(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        chart().render(bad, name="bert-operator", namespace=NAMESPACE)
    assert where in str(caught.value)
