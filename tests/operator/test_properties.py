"""Property tests: whatever the model accepts renders to schema-valid MPIJobs; anything else is refused with a field path."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from bert_operator.api import SpecError
from bert_operator.api.parse import parse_job as parse_spec
from bert_operator.api.required import require
from bert_operator.render import render_all, render_mpijob, render_mpijob_text
from bert_operator.tasks import stages_of
from tests.conftest import REPO
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
    assert error.path.startswith(PATH_ROOTS) or {root, error.path} & set(map(str, document)), error  # (a key '.')
    assert error.message and len(str(error)) < 1200, error


def assert_renders_valid(document: dict[str, Any]) -> None:
    job = parse_job(document)
    for mpijob in render_all(job):
        assert mpijob_errors(mpijob) == []
        assert pod_errors(mpijob) == []
    assert_skeleton_matches_text(job)
    assert_skeleton_matches_text(job)


#: libyaml's parser and emitter (same safe constructor, resolver and representer as yaml.safe_load/safe_dump), when
#: present: the pure-Python ones were most of an example's time.
LOADER, DUMPER = getattr(yaml, "CSafeLoader", yaml.SafeLoader), getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def assert_skeleton_matches_text(job: Any) -> None:
    """The MPIJobs built from the cached skeleton are what parsing the fully rendered text gives, key order included."""
    for stage in stages_of(job.spec):
        built, parsed = render_mpijob(job, stage), yaml.load(render_mpijob_text(job, stage), Loader=LOADER)
        assert yaml.dump(built, Dumper=DUMPER, sort_keys=False) == yaml.dump(parsed, Dumper=DUMPER, sort_keys=False)


@given(jobs())
def test_any_accepted_spec_renders_schema_valid_mpijobs(document: dict[str, Any]) -> None:
    try:
        parse_job(document)
    except SpecError as exc:
        # Generated specs may still break a cross-field rule; that must be a clean field error.
        assert all(e.path.startswith(PATH_ROOTS) for e in exc.errors)
        return
    assert_renders_valid(document)


#: Pod annotations as a tenant may write them: the keys PodSecurity reads (AppArmor, legacy seccomp) with the values
#: it allows, refuses or that are malformed, among ordinary keys.
pod_annotation_keys = st.sampled_from([
    "container.apparmor.security.beta.kubernetes.io/worker", "container.apparmor.security.beta.kubernetes.io/launcher",
    "seccomp.security.alpha.kubernetes.io/pod", "container.seccomp.security.alpha.kubernetes.io/worker",
    "container.seccomp.security.alpha.kubernetes.io/sync-dataset", "kueue.x-k8s.io/podset-required-topology",
    "team.example.com/cost-center",
])
pod_annotation_values = st.sampled_from([
    "unconfined", "Unconfined", "runtime/default", "docker/default", "localhost/p", "localhost/", "localhost/../p",
    "localhost//abs", "", "x", "cloud.provider.com/topology-rack",
])


@given(jobs(), st.dictionaries(pod_annotation_keys, pod_annotation_values, max_size=3))
def test_accepted_pod_annotations_keep_every_pod_restricted(document: dict[str, Any], annotations: dict[str, str]) -> None:
    """Whatever podTemplate annotations a spec gets accepted with, every rendered pod still passes PodSecurity
    restricted (bert_operator/pod_security.py); the rest are refused naming the field."""
    from bert_operator import pod_security as pss

    document["spec"]["resources"]["podTemplate"] = {"annotations": annotations}
    try:
        job = parse_job(document)
    except SpecError as exc:
        for error in exc.errors:
            assert_names_a_field(error, document)
        return
    for mpijob in render_all(job):
        for replica, spec in mpijob["spec"]["mpiReplicaSpecs"].items():
            template = spec["template"]
            assert pss.restricted(template["spec"], template["metadata"].get("annotations")) == [], replica
            assert pod_errors(mpijob) == []


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


@given(jobs(), st.data())
def test_hostile_mutations_are_refused_with_a_path_or_render_what_the_cluster_accepts(document: dict[str, Any],
                                                                                       data: st.DataObject) -> None:
    """Generated jobs (100 a run, 1,000 with HYPOTHESIS_PROFILE=deep), each with one to three hostile edits: no
    exception but a SpecError naming a field, and whatever is accepted renders MPIJobs the MPIJob CRD and Kubernetes'
    strict core schemas accept."""
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


# ------------------------------------------------------------------ policies (issue 25: the hypothesis tests cover them)

#: Prefixes that hold some generated locations and not others: a scheme alone holds every claim (or bucket), the
#: models' ones hold the generated vocab and checkpoint only, a template names the job.
prefix_lists = st.lists(st.sampled_from(["pvc://", "s3://", "s3://models/", "pvc://models", "s3://bert-results/{namespace}/",
                                         "pvc://{name}"]), max_size=3)
scheduling_values = st.fixed_dictionaries({}, optional={
    "queue": st.sampled_from(["team-a", "root"]), "priorityClass": st.sampled_from(["gang-low", "gang-high"]),
    "scheduleTimeoutSeconds": st.integers(0, 3600)})
policy_values = st.fixed_dictionaries({}, optional={
    "queueName": st.sampled_from(["team-a", "shared"]), "priorityClassName": st.sampled_from(["low", "high"]),
    "schedulerName": st.sampled_from(["volcano", "default-scheduler"]), "cpu": st.sampled_from(["2", "8", "500m"]),
    "memory": st.sampled_from(["8Gi", "64Gi"]), "runPolicy": st.fixed_dictionaries({"schedulingPolicy": scheduling_values}),
})
policy_limits = st.fixed_dictionaries({}, optional={
    "maxGpusPerJob": st.integers(0, 32), "maxWorkers": st.integers(1, 8),
    "maxCpuPerJob": st.sampled_from(["1", "16", "100", "1500m"]), "maxMemoryPerJob": st.sampled_from(["64Gi", "1Ti", "100"]),
    "maxCpuPerWorker": st.sampled_from(["4", "32"]), "maxMemoryPerWorker": st.sampled_from(["16Gi", "512Gi"]),
    "allowedReadPrefixes": prefix_lists, "allowedDatasetPrefixes": prefix_lists, "allowedOutputPrefixes": prefix_lists,
    "forbiddenFields": st.lists(st.sampled_from([
        "queueName", "resources.cpu", "resources.memory", "resources.tolerations", "resources.priorityClassName",
        "resources.schedulerName", "runPolicy.schedulingPolicy", "runPolicy.schedulingPolicy.queue"]), unique=True),
})


def _policy(index: int, limits: dict[str, Any], defaults: dict[str, Any], forced: dict[str, Any]) -> Any:
    from bert_operator.policy import parse_policy

    defaults = {key: value for key, value in defaults.items() if key not in forced}  # one field, both: refused
    return parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                         "metadata": {"name": f"p{index}"}, "spec": {"limits": limits, "defaults": defaults, "forced": forced}})


def _held(uri: str, prefixes: list[str], namespace: str, name: str) -> bool:
    """The location rule, written out again: `uri` is one of the prefixes or below one, as a path."""
    for prefix in prefixes:
        bare = prefix.replace("{namespace}", namespace).replace("{name}", name).rstrip("/")
        if uri == bare or uri.startswith(bare + "/"):
            return True
    return False


def _quantity(text: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


@given(jobs(), st.lists(st.tuples(policy_limits, policy_values, policy_values), min_size=1, max_size=2))
def test_a_job_the_policies_allow_keeps_every_limit_and_every_location_outside_them_is_named(
        document: dict[str, Any], generated: list[tuple[dict, dict, dict]]) -> None:
    from bert_operator.policy import decide

    policies = [_policy(i, *parts) for i, parts in enumerate(generated)]
    try:
        decision = decide(document, {"kubernetes.io/metadata.name": "ns"}, policies)
    except SpecError as exc:  # the job (with the policies' values) is no valid job: refused naming fields
        for error in exc.errors:
            assert_names_a_field(error, document)
        return
    job, paths = decision.job, {error.path for error in decision.violations}
    for error in decision.violations:
        assert error.path.startswith("spec.") and "BertTrainingPolic" in error.message
    spec, meta = job.spec, job.metadata
    written = document["spec"]
    reads = {"spec.dataset.uri": spec.dataset.uri, "spec.model.vocab": spec.model.vocab,
             "spec.model.initCheckpoint": spec.model.init_checkpoint}
    for policy in policies:
        limits = policy.spec.limits
        writes = limits.allowed_output_prefixes
        # Every location outside what a policy allows is named by a violation.
        if writes is not None and not _held(spec.output.uri, writes, meta.namespace, meta.name):
            assert "spec.output.uri" in paths
        for path, uri in reads.items():
            for allowed in ([limits.allowed_read_prefixes] + ([limits.allowed_dataset_prefixes] if path == "spec.dataset.uri" else [])):
                if uri is not None and allowed is not None and not _held(uri, [*allowed, *(writes or [])], meta.namespace, meta.name):
                    assert path in paths, (path, uri, allowed)
        # Forbidden fields the tenant set are named; forced values are in place whatever the job said.
        for dotted in limits.forbidden_fields:
            node: Any = written
            for key in dotted.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            if node is not None:
                assert f"spec.{dotted}" in paths
    if decision.violations:
        return
    res = spec.resources
    for policy in policies:
        limits, forced = policy.spec.limits, policy.spec.forced
        assert limits.max_gpus_per_job is None or res.workers * res.gpus_per_worker <= limits.max_gpus_per_job
        assert limits.max_workers is None or res.workers <= limits.max_workers
        for given_amount, per_worker, per_job in ((res.cpu, limits.max_cpu_per_worker, limits.max_cpu_per_job),
                                                  (res.memory, limits.max_memory_per_worker, limits.max_memory_per_job)):
            if per_worker is not None or per_job is not None:
                assert given_amount is not None
                assert per_worker is None or _quantity(given_amount) <= _quantity(per_worker) * (1 + 1e-12)
                assert per_job is None or res.workers * _quantity(given_amount) <= _quantity(per_job) * (1 + 1e-12)
        assert forced.queue_name is None or spec.queue_name == forced.queue_name
        assert forced.priority_class_name is None or res.priority_class_name == forced.priority_class_name
        assert forced.scheduler_name is None or res.scheduler_name == forced.scheduler_name
        gang = forced.run_policy.scheduling_policy if forced.run_policy is not None else None
        if gang is not None and gang.queue is not None:
            assert spec.run_policy.scheduling_policy.queue == gang.queue
    # What the policies allow renders MPIJobs the MPIJob CRD accepts (its validator is built once per process; the
    # core pod schemas are held to the generated jobs above, and the policies' values are of those same types).
    for mpijob in render_all(job):
        assert mpijob_errors(mpijob) == []


#: The example job templates that pass PodSecurity restricted as they are (examples/templates/).
_TEMPLATE_EXAMPLES = ("efa", "infiniband", "fluent-bit-sidecar", "dataset-cache-init", "istio-off")


@given(jobs(), st.lists(st.sampled_from(_TEMPLATE_EXAMPLES), unique=True, max_size=3))
def test_any_accepted_spec_with_the_example_templates_renders_valid_restricted_mpijobs(document: dict[str, Any],
                                                                                       names: list[str]) -> None:
    """Whatever the job, the example templates (any of them, in any order) give MPIJobs the MPI Operator's CRD and the
    Pod schema accept, whose pods pass PodSecurity restricted, and which keep everything the operator rendered."""
    from bert_operator import pod_security as pss
    from bert_operator.templates import parse_overlay, render_with_overlays

    try:
        job = parse_job(document)
    except SpecError:
        return
    overlays = [parse_overlay((REPO / "examples" / "templates" / f"{name}.yaml").read_text(), name) for name in names]
    for plain, mpijob in zip(render_all(job), render_with_overlays(job, overlays)):
        assert mpijob_errors(mpijob) == [] and pod_errors(mpijob) == []
        for replica, spec in mpijob["spec"]["mpiReplicaSpecs"].items():
            template = spec["template"]
            assert pss.restricted(template["spec"], template["metadata"].get("annotations")) == [], replica
        assert mpijob["metadata"]["name"] == plain["metadata"]["name"]


def _dict_leaves(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths to the scalar leaves reached through objects only (no list on the way)."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _dict_leaves(value, (*prefix, key))]
    return [prefix] if not isinstance(node, list) and prefix else []


@given(jobs(), st.data())
def test_a_template_that_changes_anything_the_operator_rendered_is_refused_naming_that_field(
        document: dict[str, Any], data: st.DataObject) -> None:
    """Pick any value of the rendered MPIJob (metadata, run policy, replicas, security contexts, labels) and a template
    that changes it: the MPIJob is refused, naming that field, with the line of the template that set it."""
    import json

    from bert_operator.templates import TemplateInvalid, parse_overlay, render_with_overlays

    try:
        job = parse_job(document)
    except SpecError:
        return
    mpijob = render_all(job)[0]
    path = data.draw(st.sampled_from(_dict_leaves(mpijob)))
    value: Any = mpijob
    for key in path:
        value = value[key]
    changed = not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float)) else f"{value}-x"
    patch: Any = changed
    for key in reversed(path):
        patch = {key: patch}
    text = "name: change\nversion: '1'\npatch: |\n  " + json.dumps(patch) + "\n"
    try:
        render_with_overlays(job, [parse_overlay(text, "change.yaml")], level="privileged")
    except TemplateInvalid as exc:
        assert exc.overlay == "change" and exc.field == ".".join(map(str, path)), (str(exc), path)
        assert exc.line == 4 and exc.patch_line == 1
        return
    raise AssertionError(f"changing {'.'.join(map(str, path))} to {changed!r} was not refused")
