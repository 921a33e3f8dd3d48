"""Property tests: whatever the model accepts renders to schema-valid MPIJobs; anything else is refused with a field path."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bert_operator.api import SpecError
from bert_operator.api.parse import parse_job as parse_spec
from bert_operator.api.required import require
from bert_operator.render import render_all, render_mpijob, render_mpijob_text
from bert_operator.tasks import stages_of
from tests.schemas import mpijob_errors, pod_errors


def parse_job(document: Any) -> Any:
    """A job as what renders it sees it: valid, and lacking nothing a policy could have given (there is none here)."""
    return require(parse_spec(document))


PATH_ROOTS = ("spec", "metadata", "apiVersion", "kind", "status", "<document>")

names = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,6})?", fullmatch=True)
buckets = st.from_regex(r"[a-z0-9][a-z0-9-]{2,12}[a-z0-9]", fullmatch=True)
claims = st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
subpaths = st.from_regex(r"([a-z0-9_]{1,8}/){0,2}[a-z0-9_.]{1,8}", fullmatch=True)
quantities = st.sampled_from(["500m", "8", "16Gi", "1.5", "64Gi", 4, 32])


@st.composite
def stores(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        store: dict[str, Any] = {"uri": f"s3://{draw(buckets)}/{draw(subpaths)}"}
        if draw(st.booleans()):
            store["endpoint"] = "http://minio.minio.svc:9000"
        if draw(st.booleans()):
            store["credentialsSecret"] = draw(claims)
        return store
    return {"uri": f"pvc://{draw(claims)}/{draw(subpaths)}"}


@st.composite
def pretrain_tasks(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    tenths = draw(st.lists(st.integers(1, 8), min_size=count, max_size=count).filter(lambda xs: sum(xs) <= 10))
    tenths[-1] += 10 - sum(tenths)
    steps = draw(st.integers(50, 20000))
    phases = []
    for share in tenths:
        seq = draw(st.sampled_from([64, 128, 256, 512]))
        phases.append({
            "maxSeqLength": seq,
            "maxPredictionsPerSeq": draw(st.integers(1, seq // 4)),
            "stepsFraction": share / 10,
            "batchSizePerGpu": draw(st.integers(1, 128)),
            "learningRate": draw(st.floats(1e-6, 1e-2)),
            "warmupSteps": draw(st.integers(0, 5)),
            "accumulationSteps": draw(st.integers(1, 512)),
        })
    return {"pretrain": {"trainSteps": steps, "phases": phases, "saveCheckpointsSteps": draw(st.integers(1, 1000))}}


finetune_tasks = st.one_of(
    st.builds(lambda v, seq: {"squad": {"version": v, "maxSeqLength": seq, "docStride": seq // 3}},
              st.sampled_from(["1.1", "2.0"]), st.sampled_from([128, 256, 384, 512])),
    st.builds(lambda t, e: {"glue": {"taskName": t, "epochs": e}}, st.sampled_from(["CoLA", "MRPC", "MNLI"]), st.floats(0.5, 5)),
    st.builds(lambda seq, shards: {"prepareData": {"maxSeqLength": seq, "maxPredictionsPerSeq": seq // 8, "shards": shards}},
              st.sampled_from([128, 512]), st.integers(8, 2000)),
)


@st.composite
def jobs(draw: st.DrawFn) -> dict[str, Any]:
    task = draw(st.one_of(pretrain_tasks(), finetune_tasks))
    model: dict[str, Any] = {"preset": draw(st.sampled_from(["base", "large", "custom"]))}
    if model["preset"] == "custom":
        heads = draw(st.sampled_from([1, 2, 4]))
        model["config"] = {"hidden_size": heads * 16, "num_attention_heads": heads, "num_hidden_layers": draw(st.integers(1, 4))}
    if "pretrain" not in task:
        model["vocab"] = "s3://models/vocab.txt"
        model["initCheckpoint"] = "pvc://models/bert"
    resources: dict[str, Any] = {"workers": draw(st.integers(1, 8)), "gpusPerWorker": draw(st.integers(0, 8))}
    if draw(st.booleans()):
        resources["cpu"] = draw(quantities)
        resources["memory"] = draw(quantities)
    if draw(st.booleans()):
        resources["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec = {
        "task": task, "model": model, "resources": resources,
        "dataset": draw(stores()), "output": draw(stores()),
        "precision": draw(st.sampled_from(["fp32", "fp16", "bf16"])), "xla": draw(st.booleans()),
        "runPolicy": {"suspend": draw(st.booleans()), "cleanPodPolicy": draw(st.sampled_from(["None", "Running", "All"]))},
    }
    if draw(st.booleans()):
        spec["queueName"] = "team-a"
    return {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob",
            "metadata": {"name": draw(names), "namespace": "ns"}, "spec": spec}


def assert_names_a_field(error: Any, document: dict[str, Any]) -> None:
    """A field path into the document (a known root, or an unknown top-level key by its name), a message, and
    no wall of text (offending values are quoted to 200 characters)."""
    root = error.path.split(".", 1)[0].split("[", 1)[0]
    assert error.path.startswith(PATH_ROOTS) or root in map(str, document), error
    assert error.message and len(str(error)) < 1200, error


def assert_renders_valid(document: dict[str, Any]) -> None:
    job = parse_job(document)
    for mpijob in render_all(job):
        assert mpijob_errors(mpijob) == []
        assert pod_errors(mpijob) == []
    assert_skeleton_matches_text(job)
    assert_skeleton_matches_text(job)


def assert_skeleton_matches_text(job: Any) -> None:
    """The MPIJobs built from the cached skeleton are what parsing the fully rendered text gives, key order included."""
    for stage in stages_of(job.spec):
        built, parsed = render_mpijob(job, stage), yaml.safe_load(render_mpijob_text(job, stage))
        assert yaml.safe_dump(built, sort_keys=False) == yaml.safe_dump(parsed, sort_keys=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_any_accepted_spec_renders_schema_valid_mpijobs(document: dict[str, Any]) -> None:
    try:
        parse_job(document)
    except SpecError as exc:
        # Generated specs may still break a cross-field rule; that must be a clean field error.
        assert all(e.path.startswith(PATH_ROOTS) for e in exc.errors)
        return
    assert_renders_valid(document)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs(), st.data())
def test_random_mutations_are_valid_or_refused_with_a_path(document: dict[str, Any], data: st.DataObject) -> None:
    mutated = copy.deepcopy(document)
    path = data.draw(st.sampled_from(_paths(mutated)[1:]))
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(junk)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(junk)
    try:
        parse_job(mutated)
    except SpecError as exc:
        assert exc.errors
        for error in exc.errors:
            assert_names_a_field(error, mutated)
        return
    assert_renders_valid(mutated)


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["x"] = {}
        node = node["x"]
    return root


#: Values a hostile or careless tenant puts anywhere: out-of-range numbers, non-numbers, text that breaks labels,
#: names and paths, credentials in URLs, values nested past any real job, affinity-shaped nonsense.
hostile = st.one_of(
    junk,
    st.sampled_from([10**400, -(2**63) - 1, 2**63, float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 2.0]),
    st.sampled_from(["4", "true", ".nan", "", " ", "a b", "x" * 64, "x" * 300, "UPPER", "-lead", "trail-", "a/b/c",
                     "pvc://claim/../../etc", "s3://bucket/../x", "http://KEY:SECRET@minio:9000", "s3://b/../../",
                     "ünïcode", "tab\there", "new\nline", "${HOME}", "$(rm -rf /)", "a" * 70_000]),
    st.builds(_deep, st.integers(60, 120)),
    st.fixed_dictionaries({"nodeAffinity": st.one_of(st.integers(), st.text(max_size=3), st.dictionaries(
        st.sampled_from(["requiredDuringSchedulingIgnoredDuringExecution", "bogus"]), junk, max_size=2))}),
)


@settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(jobs(), st.data())
def test_hostile_mutations_are_refused_with_a_path_or_render_what_the_cluster_accepts(document: dict[str, Any],
                                                                                       data: st.DataObject) -> None:
    """1,000 generated jobs, each with one to three hostile edits: no exception but a SpecError naming a field, and
    whatever is accepted renders MPIJobs the MPIJob CRD and Kubernetes' strict core schemas accept."""
    mutated = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(mutated)[1:]))
        parent = mutated
        try:
            for key in path[:-1]:
                parent = parent[key]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced the way there
        if isinstance(parent, dict):
            if data.draw(st.booleans()):
                parent[path[-1]] = data.draw(hostile)
            else:
                parent[data.draw(st.sampled_from(["affinity", "nodeSelector", "image", "queueName", "endpoint",
                                                  "priorityClassName", "tolerations", str(path[-1])]))] = data.draw(hostile)
        elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
            parent[path[-1]] = data.draw(hostile)
    try:
        job = parse_job(mutated)
    except SpecError as exc:
        assert exc.errors
        for error in exc.errors:
            assert_names_a_field(error, mutated)
        return
    for mpijob in render_all(job):
        assert mpijob_errors(mpijob) == []
        assert pod_errors(mpijob) == []
    assert_skeleton_matches_text(job)
