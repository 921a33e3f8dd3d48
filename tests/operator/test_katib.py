"""Katib with BertTrainingJob trials (examples/katib-mrpc.yaml): the Experiment is what Katib's own SDK models
describe, every trial Katib can make from the template is a valid job that prints its metrics where the StdOut
collector reads them, and the success and failure conditions find the job's own conditions."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from bert_operator.api.parse import parse_job
from bert_operator.render import render_all
from tests.conftest import KATIB_EXAMPLES
from tests.operator.fakes import GLUE, NOW, FakeCluster, job, sync

katib = pytest.importorskip("kubeflow.katib", reason="installed by scripts/bootstrap.sh dev (--no-deps)")

#: Katib's StdOut collector's default filter (pkg/metricscollector/v1beta1/common: DefaultFilter).
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def documents(path: Any) -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in yaml.safe_load_all(path.read_text())}


def sdk_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    """Where `value` is not what the Katib SDK's openapi types say (kubernetes' own for V1ObjectMeta): an unknown
    field, a wrong type, at its path."""
    import kubernetes

    if value is None:
        return []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in sdk_errors(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: an object, got {type(value).__name__}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for key, item in value.items() for e in sdk_errors(item, inner, f"{path}.{key}")]
    simple = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object}
    if type_name in simple:
        ok = isinstance(value, simple[type_name]) and not (type_name in ("int", "float") and isinstance(value, bool))
        return [] if ok else [f"{path}: a {type_name}, got {value!r}"]
    model = getattr(katib.models, type_name, None) or getattr(kubernetes.client.models, type_name)
    if not isinstance(value, dict):
        return [f"{path}: an object ({type_name}), got {type(value).__name__}"]
    by_wire = {wire: attr for attr, wire in model.attribute_map.items()}
    errors = [f"{path}.{key}: not a field of {type_name}" for key in value if key not in by_wire]
    return errors + [e for key, item in value.items() if key in by_wire
                     for e in sdk_errors(item, model.openapi_types[by_wire[key]], f"{path}.{key}")]


def test_the_katib_example_is_an_experiment_as_the_katib_sdk_describes_it() -> None:
    [path] = KATIB_EXAMPLES
    experiment = documents(path)["Experiment"]
    assert (experiment["apiVersion"], experiment["kind"]) == ("kubeflow.org/v1beta1", "Experiment")
    assert sdk_errors(experiment, "V1beta1Experiment") == []
    assert sdk_errors({**experiment, "spec": {**experiment["spec"], "trialTemplat": {}}}, "V1beta1Experiment") \
        == [".spec.trialTemplat: not a field of V1beta1ExperimentSpec"]  # (the check is not vacuous)
    spec = experiment["spec"]
    assert {p["parameterType"] for p in spec["parameters"]} <= {"double", "int", "discrete", "categorical"}
    template = spec["trialTemplate"]
    assert {p["reference"] for p in template["trialParameters"]} == {p["name"] for p in spec["parameters"]}
    configmap = documents(path)["ConfigMap"]
    assert (template["configMap"]["configMapName"], template["configMap"]["templatePath"]) == (
        configmap["metadata"]["name"], next(iter(configmap["data"])))


def trials(path: Any) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every trial job Katib can make from the template (each parameter at the ends of its feasible space), as Katib
    makes it: the text's placeholders replaced, then parsed."""
    docs = documents(path)
    spec = docs["Experiment"]["spec"]
    text = next(iter(docs["ConfigMap"]["data"].values()))
    choices = [p["feasibleSpace"].get("list") or [p["feasibleSpace"]["min"], p["feasibleSpace"]["max"]]
               for p in spec["parameters"]]
    by_reference = {p["reference"]: p["name"] for p in spec["trialTemplate"]["trialParameters"]}
    made = []
    for index in range(max(map(len, choices))):
        values = {by_reference[p["name"]]: choice[index % len(choice)] for p, choice in zip(spec["parameters"], choices)}
        filled = text.replace("${trialSpec.Name}", f"bert-mrpc-trial{index}")
        for name, value in values.items():
            filled = filled.replace(f"${{trialParameters.{name}}}", value)
        document = yaml.safe_load(filled)
        document["metadata"] = {"name": f"bert-mrpc-trial{index}", "namespace": "ml-training"}
        made.append((values, document))
    return made


def test_every_trial_katib_makes_is_a_valid_job_that_prints_its_metrics_from_the_primary_container() -> None:
    [path] = KATIB_EXAMPLES
    template = documents(path)["Experiment"]["spec"]["trialTemplate"]
    made = trials(path)
    assert len(made) == 3
    for values, document in made:
        parsed = parse_job(document)  # numbers stay numbers: the template is raw text
        assert parsed.spec.task.glue.learning_rate == float(values["learningRate"])
        assert parsed.spec.task.glue.epochs == float(values["epochs"])
        [mpijob] = render_all(parsed)
        launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
        [primary] = [c for c in launcher if c["name"] == template["primaryContainerName"]]
        assert "--print_metrics" in primary["command"]
        assert parsed.spec.output.uri.endswith(document["metadata"]["name"])  # each trial its own folder


def test_the_printed_metrics_are_what_katibs_stdout_collector_takes() -> None:
    from bert_trainer.finetune.metric_lines import metric_lines

    lines = metric_lines({"task": "MRPC", "dev": {"accuracy": 0.8553921568627451, "f1": 0.8993288590604027},
                          "steps": 345, "exported": ["hf"]})
    assert lines == ["accuracy=0.855392", "f1=0.899329"]
    taken = dict(match.group(1, 2) for line in lines for match in [KATIB_FILTER.fullmatch(line)] if match)
    objective = documents(KATIB_EXAMPLES[0])["Experiment"]["spec"]["objective"]
    assert {objective["objectiveMetricName"], *objective["additionalMetricNames"]} == set(taken)
    assert metric_lines({"dev_matched": {"accuracy": 0.84}, "dev_mismatched": {"accuracy": float("nan")}}) == \
        ["accuracy=0.84"]  # a NaN is no score


def gjson_conditions(expression: str, status: dict[str, Any]) -> bool:
    """The GJSON query forms Katib's trial controller evaluates for a custom resource's success and failure:
    `status.conditions.#(type=="X")#|#(status=="Y")#`, true when the result is not empty."""
    found = re.fullmatch(r'status\.conditions\.#\(type=="(\w+)"\)#\|#\(status=="(\w+)"\)#', expression)
    assert found, expression
    kind, value = found.groups()
    return any(c.get("type") == kind and c.get("status") == value for c in status.get("conditions") or [])


def test_the_success_and_failure_conditions_find_the_jobs_own() -> None:
    template = documents(KATIB_EXAMPLES[0])["Experiment"]["spec"]["trialTemplate"]
    cluster = FakeCluster()
    from bert_operator.reconcile import Reconciler

    reconciler = Reconciler(api=cluster, events=cluster, clock=lambda: NOW)
    ok, bad = job(GLUE, name="ok"), job(GLUE, name="bad")
    for body in (ok, bad):
        sync(reconciler, body)
    for body, ended in ((ok, "Succeeded"), (bad, "Failed")):
        running = body["status"]
        assert not gjson_conditions(template["successCondition"], running)
        assert not gjson_conditions(template["failureCondition"], running)
        cluster.set_conditions(f"{body['metadata']['name']}-glue", "Created", "Running", ended)
        sync(reconciler, body)
    assert gjson_conditions(template["successCondition"], ok["status"])
    assert not gjson_conditions(template["failureCondition"], ok["status"])
    assert gjson_conditions(template["failureCondition"], bad["status"])
    assert not gjson_conditions(template["successCondition"], bad["status"])
