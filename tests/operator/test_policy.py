"""BertTrainingPolicies applied to jobs (bert_operator.policy): selection, defaults, forced values, limits, conflicts.

Pure unit tests of the one function the webhook and the operator share, and hypothesis-generated policies and jobs:
a job the policies allow never exceeds any of their limits, and what they give it is always a valid job.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bert_operator.api import SpecError
from bert_operator.api.policy import LabelSelector
from bert_operator.policy import PolicyInput, conflicts, decide, parse_policy, selects

GLUE = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob",
        "metadata": {"name": "mrpc", "namespace": "team-a"},
        "spec": {"task": {"glue": {}}, "model": {"vocab": "s3://bert-models/vocab.txt", "initCheckpoint": "s3://bert-models/base"},
                 "dataset": {"uri": "s3://bert-data/glue"}, "output": {"uri": "s3://bert-results/team-a/mrpc"}}}
TEAM = {"team": "a"}


def policy(name: str, selector: dict[str, Any] | None = None, **spec: Any) -> Any:
    return parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": name},
                         "spec": {"namespaceSelector": selector if selector is not None else {"matchLabels": TEAM}, **spec}})


def job(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(GLUE)
    body["spec"].update(spec)
    return body


def messages(decision: Any) -> list[str]:
    return [str(error) for error in decision.violations]


#: The admin guide's team namespace: every job through the team's queue, at most 16 GPUs, images from the team's
#: registry only, results only under the team's prefix.
TEAM_DEFAULT = dict(
    forced={"queueName": "team-a"},
    defaults={"priorityClassName": "batch-low", "nodeSelector": {"pool": "gpu"}, "output": {
        "uri": "s3://bert-results/{namespace}/{name}", "credentialsSecret": "team-a-s3"}},
    limits={"maxGpusPerJob": 16, "allowedImages": ["registry.example.com/team-a/*"],
            "allowedOutputPrefixes": ["s3://bert-results/{namespace}/"]},
)


def test_the_admin_guides_namespace_forces_the_queue_and_fills_defaults() -> None:
    decision = decide(job(resources={"workers": 2, "gpusPerWorker": 8}), TEAM, [policy("team-default", **TEAM_DEFAULT)])
    assert decision.violations == ()
    assert decision.job.spec.queue_name == "team-a" and decision.job.spec.resources.priority_class_name == "batch-low"
    assert decision.job.spec.resources.node_selector == {"pool": "gpu"}
    assert decision.job.spec.output.uri == "s3://bert-results/team-a/mrpc"  # the job's own: it set one
    assert decision.status() == {"policies": ["team-default"], "applied": [
        {"path": "spec.output.credentialsSecret", "value": "team-a-s3", "how": "default", "policy": "team-default"},
        {"path": "spec.resources.nodeSelector", "value": '{"pool":"gpu"}', "how": "default", "policy": "team-default"},
        {"path": "spec.resources.priorityClassName", "value": "batch-low", "how": "default", "policy": "team-default"},
        {"path": "spec.queueName", "value": "team-a", "how": "forced", "policy": "team-default"}]}


def test_a_job_over_the_gpu_limit_is_refused_naming_the_field_the_policy_and_the_arithmetic() -> None:
    decision = decide(job(resources={"workers": 4, "gpusPerWorker": 8}), TEAM, [policy("team-default", **TEAM_DEFAULT)])
    assert messages(decision) == ["spec.resources.gpusPerWorker: 8 exceeds 16 GPUs per job allowed by BertTrainingPolicy "
                                  "team-default (4 x 8 = 32)"]


def test_images_and_output_outside_what_the_policy_allows_are_refused() -> None:
    decision = decide(job(image="docker.io/someone/bert:latest", output={"uri": "s3://bert-results/team-b/x"}), TEAM,
                      [policy("team-default", **TEAM_DEFAULT)])
    assert messages(decision) == [
        "spec.image: 'docker.io/someone/bert:latest' is not allowed by BertTrainingPolicy team-default: the image must "
        "match one of registry.example.com/team-a/*",
        "spec.output.uri: 's3://bert-results/team-b/x' is not under a location allowed by BertTrainingPolicy "
        "team-default: s3://bert-results/team-a/"]
    allowed = decide(job(image="registry.example.com/team-a/trainer:1.2"), TEAM, [policy("team-default", **TEAM_DEFAULT)])
    assert allowed.violations == ()


def test_a_prefix_is_a_path_not_a_string_prefix() -> None:
    limits = {"allowedOutputPrefixes": ["s3://bert-results/team-a"]}
    assert decide(job(output={"uri": "s3://bert-results/team-a/x"}), TEAM, [policy("p", limits=limits)]).violations == ()
    assert decide(job(output={"uri": "s3://bert-results/team-ab/x"}), TEAM, [policy("p", limits=limits)]).violations


def test_the_default_output_is_the_template_filled_with_the_jobs_namespace_and_name() -> None:
    body = job()
    del body["spec"]["output"]
    decision = decide(body, TEAM, [policy("team-default", **TEAM_DEFAULT)])
    assert decision.violations == ()
    assert decision.job.spec.output.uri == "s3://bert-results/team-a/mrpc"
    assert decision.job.spec.output.credentials_secret == "team-a-s3"
    own = decide(job(output={"uri": "s3://bert-results/team-a/elsewhere"}), TEAM, [policy("team-default", **TEAM_DEFAULT)])
    assert own.job.spec.output.uri == "s3://bert-results/team-a/elsewhere"  # the job's own uri, the store's Secret
    assert own.job.spec.output.credentials_secret == "team-a-s3"


def test_defaults_never_override_what_the_job_set_but_forced_values_do() -> None:
    policies = [policy("p", defaults={"precision": "bf16", "priorityClassName": "low"}, forced={"schedulerName": "volcano"})]
    decision = decide(job(precision="fp32", resources={"schedulerName": "default-scheduler"}), TEAM, policies)
    spec = decision.job.spec
    assert (spec.precision, spec.resources.priority_class_name, spec.resources.scheduler_name) == ("fp32", "low", "volcano")
    unset = decide(job(), TEAM, policies).job.spec
    assert unset.precision == "bf16"  # the model's own default (fp16) is not the job saying so


def test_a_policy_that_selects_another_namespace_does_nothing() -> None:
    decision = decide(job(resources={"workers": 64}), {"team": "b"}, [policy("team-default", **TEAM_DEFAULT)])
    assert decision.violations == () and decision.policies == () and decision.status() is None
    assert decision.job.spec.queue_name is None


def test_forbidden_fields_are_refused_when_the_tenant_sets_them_but_policies_may_set_them() -> None:
    policies = [policy("p", limits={"forbiddenFields": ["resources.tolerations", "image"]},
                       forced={"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]})]
    refused = decide(job(image="x/y:1", resources={"tolerations": [{"operator": "Exists"}]}), TEAM, policies)
    assert messages(refused) == [
        "spec.resources.tolerations: may not be set in this namespace (BertTrainingPolicy p sets it); remove it",
        "spec.image: may not be set in this namespace (BertTrainingPolicy p sets it); remove it"]
    allowed = decide(job(), TEAM, policies)
    assert allowed.violations == () and allowed.job.spec.resources.tolerations[0].key == "gpu"


def test_several_policies_the_most_restrictive_limit_wins_and_values_must_agree() -> None:
    loose = policy("a-loose", limits={"maxGpusPerJob": 64, "maxWorkers": 8}, forced={"queueName": "team-a"})
    tight = policy("b-tight", {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
                   limits={"maxGpusPerJob": 8}, forced={"queueName": "team-a"})
    decision = decide(job(resources={"workers": 2, "gpusPerWorker": 8}), TEAM, [tight, loose])
    assert decision.policies == ("a-loose", "b-tight")
    assert messages(decision) == ["spec.resources.gpusPerWorker: 8 exceeds 8 GPUs per job allowed by BertTrainingPolicy "
                                  "b-tight (2 x 8 = 16)"]
    other = policy("c-other", forced={"queueName": "shared"})
    clash = decide(job(resources={"workers": 1, "gpusPerWorker": 8}), TEAM, [loose, other])
    assert messages(clash) == ["spec.queueName: BertTrainingPolicies a-loose and c-other give different forced values "
                               "('team-a' and 'shared'); the platform team must resolve the conflict"]
    assert clash.job.spec.queue_name is None  # neither wins
    assert conflicts([loose, other, tight], {"team-a": TEAM, "elsewhere": {}}) == {
        "a-loose": [f"spec.queueName in namespace team-a: {clash.violations[0].message}"],
        "c-other": [f"spec.queueName in namespace team-a: {clash.violations[0].message}"]}


def test_limits_on_presets_custom_configs_deadlines_and_steps() -> None:
    policies = [policy("p", limits={"allowedPresets": ["base"], "allowCustomModelConfig": False,
                                    "maxActiveDeadlineSeconds": 86400, "maxTrainSteps": 1000})]
    pretrain = {"task": {"pretrain": {"trainSteps": 5000}}, "model": {"preset": "custom", "config": {"hidden_size": 256,
                "num_attention_heads": 4}}, "dataset": {"uri": "s3://bert-data/wiki"}, "output": {"uri": "s3://bert-results/x"}}
    decision = decide({**GLUE, "spec": pretrain}, TEAM, policies)
    assert [e.path for e in decision.violations] == ["spec.model.preset", "spec.model.config",
                                                     "spec.runPolicy.activeDeadlineSeconds", "spec.task.pretrain.trainSteps"]
    assert messages(decision)[2] == "spec.runPolicy.activeDeadlineSeconds: required by BertTrainingPolicy p: at most 86400"


def test_a_job_the_policies_make_invalid_fails_as_an_invalid_spec() -> None:
    with pytest.raises(SpecError, match="spec.queueName"):
        decide(job(), TEAM, [policy("p", forced={"queueName": "q" * 64})])


def test_every_location_a_job_reads_must_lie_under_the_read_prefixes_or_where_the_namespace_writes() -> None:
    """Issue 25, item 2: initCheckpoint and vocab under another team's prefix were read with the platform's keys."""
    limits = {"allowedReadPrefixes": ["s3://bert-models/", "s3://bert-data/"],
              "allowedOutputPrefixes": ["s3://bert-results/{namespace}/"]}
    stolen = job(model={"vocab": "s3://bert-results/team-b/vocab.txt",
                        "initCheckpoint": "s3://bert-results/team-b/secret-model/phase2"})
    assert messages(decide(stolen, TEAM, [policy("p", limits=limits)])) == [
        "spec.model.initCheckpoint: 's3://bert-results/team-b/secret-model/phase2' is not under a location allowed by "
        "BertTrainingPolicy p: s3://bert-models/, s3://bert-data/, s3://bert-results/team-a/",
        "spec.model.vocab: 's3://bert-results/team-b/vocab.txt' is not under a location allowed by BertTrainingPolicy "
        "p: s3://bert-models/, s3://bert-data/, s3://bert-results/team-a/"]
    # The namespace's own results are readable (a fine-tuning job starts from the team's pretraining).
    own = job(model={"vocab": "s3://bert-models/vocab.txt", "initCheckpoint": "s3://bert-results/team-a/pretrain/phase2"})
    assert decide(own, TEAM, [policy("p", limits=limits)]).violations == ()
    outside = job(dataset={"uri": "s3://bert-results/team-ab/glue"})  # a prefix is a path, for reads too
    assert [e.path for e in decide(outside, TEAM, [policy("p", limits=limits)]).violations] == ["spec.dataset.uri"]
    claims = {"allowedReadPrefixes": ["pvc://"]}  # a scheme alone: any claim of the job's own namespace
    assert decide(job(model={"vocab": "pvc://models/vocab.txt", "initCheckpoint": "pvc://models/base"},
                      dataset={"uri": "pvc://data/glue"}), TEAM, [policy("p", limits=claims)]).violations == ()
    assert [e.path for e in decide(job(), TEAM, [policy("p", limits=claims)]).violations] == [
        "spec.dataset.uri", "spec.model.initCheckpoint", "spec.model.vocab"]


def test_a_location_another_job_gives_is_checked_once_resolved_and_refused_naming_the_reference() -> None:
    """Issue 25, item 2: what fromJob resolves to is known only to the operator's plan; it is bound there."""
    from bert_operator.reconcile.observe import Observed
    from bert_operator.reconcile.plan import CreateMPIJob, plan
    from tests.operator.test_dependencies import documents, succeeded

    jobs = documents()
    limits = {"allowedReadPrefixes": ["s3://bert-models/", "s3://bert-data/"],
              "allowedOutputPrefixes": ["s3://bert-results/"]}
    given = PolicyInput(TEAM, (policy("team-default", limits=limits),))
    other = succeeded(jobs["bert-pretrain"], resolved={"output": {"uri": "s3://other-team/bert-pretrain"}})
    producers = {"bert-data": succeeded(jobs["bert-data"]), "bert-pretrain": other}
    result = plan(jobs["bert-squad"], {}, Observed(policy=given, producers=producers), "2026-12-02T08:00:00Z")
    assert result.actions == () and result.status["phase"] == "Failed"
    failed = next(c for c in result.status["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("PolicyViolation", (
        "spec.model.initCheckpointFrom.fromJob: BertTrainingJob bert-pretrain gives 's3://other-team/bert-pretrain/"
        "phase2', which is not under a location allowed by BertTrainingPolicy team-default: s3://bert-models/, "
        "s3://bert-data/, s3://bert-results/"))
    # A recorded output climbing out of an allowed prefix (a status edited by hand) lies under nothing.
    producers["bert-pretrain"] = succeeded(jobs["bert-pretrain"], resolved={"output": {"uri": "s3://bert-results/../x"}})
    climbed = plan(jobs["bert-squad"], {}, Observed(policy=given, producers=producers), "2026-12-02T08:00:00Z")
    refused = next(c for c in climbed.status["conditions"] if c["type"] == "Failed")
    assert climbed.actions == () and "'s3://bert-results/../x/phase2', which is not under" in refused["message"]
    producers["bert-pretrain"] = succeeded(jobs["bert-pretrain"])  # wrote where this namespace may write
    [create] = plan(jobs["bert-squad"], {}, Observed(policy=given, producers=producers), "2026-12-02T08:00:00Z").actions
    assert isinstance(create, CreateMPIJob)


def test_cpu_and_memory_are_limited_per_worker_and_per_job_and_then_required() -> None:
    """Issue 25, item 16: 1,024 workers x 96 CPU x 700Gi with 0 GPUs passed every limit."""
    limits = {"maxCpuPerJob": "192", "maxMemoryPerJob": "1536Gi", "maxCpuPerWorker": "96", "maxMemoryPerWorker": "1Ti"}
    huge = job(resources={"workers": 1024, "gpusPerWorker": 0, "cpu": "96", "memory": "700Gi"})
    assert messages(decide(huge, TEAM, [policy("p", limits=limits)])) == [
        "spec.resources.cpu: 96 exceeds 192 CPUs per job allowed by BertTrainingPolicy p (1024 x 96 = 98304)",
        "spec.resources.memory: 700Gi exceeds 1536Gi memory per job allowed by BertTrainingPolicy p "
        "(1024 x 700Gi = 716800Gi)"]
    wide = job(resources={"workers": 1, "gpusPerWorker": 0, "cpu": "97", "memory": "1025Gi"})
    assert messages(decide(wide, TEAM, [policy("p", limits=limits)])) == [
        "spec.resources.cpu: 97 exceeds 96 CPUs per worker allowed by BertTrainingPolicy p",
        "spec.resources.memory: 1025Gi exceeds 1Ti memory per worker allowed by BertTrainingPolicy p"]
    fits = job(resources={"workers": 4, "gpusPerWorker": 0, "cpu": "48000m", "memory": "384Gi"})
    assert decide(fits, TEAM, [policy("p", limits=limits)]).violations == ()
    # A job without cpu or memory has pods without a limit: required, unless the policy gives them.
    assert messages(decide(job(), TEAM, [policy("p", limits=limits)])) == [
        "spec.resources.cpu: required by BertTrainingPolicy p: at most 96 per worker and 192 per job",
        "spec.resources.memory: required by BertTrainingPolicy p: at most 1Ti per worker and 1536Gi per job"]
    given = decide(job(), TEAM, [policy("p", limits=limits, defaults={"cpu": 16, "memory": "128Gi"})])
    assert given.violations == () and (given.job.spec.resources.cpu, given.job.spec.resources.memory) == ("16", "128Gi")


def test_every_scheduling_field_can_be_forced_a_volcano_queue_included_or_forbidden() -> None:
    """Issue 25, item 16: priorityClassName, workloadPriorityClassName, schedulingPolicy and schedulerName."""
    forced = {"priorityClassName": "team-a", "workloadPriorityClassName": "team-a-batch", "schedulerName": "volcano",
              "runPolicy": {"schedulingPolicy": {"queue": "team-a", "priorityClass": "team-a-gang",
                                                 "scheduleTimeoutSeconds": 600}}}
    tenant = job(queueName="q", workloadPriorityClassName="urgent", resources={
        "priorityClassName": "system-cluster-critical", "schedulerName": "my-scheduler"},
        runPolicy={"schedulingPolicy": {"queue": "root", "priorityClass": "high", "minAvailable": 1}})
    decision = decide(tenant, TEAM, [policy("p", forced=forced)])
    assert decision.violations == ()
    spec = decision.job.spec
    assert (spec.resources.priority_class_name, spec.workload_priority_class_name, spec.resources.scheduler_name) == (
        "team-a", "team-a-batch", "volcano")
    gang = spec.run_policy.scheduling_policy
    assert (gang.queue, gang.priority_class, gang.schedule_timeout_seconds, gang.min_available) == (
        "team-a", "team-a-gang", 600, 1)  # the job's own size stays its own
    from bert_operator.render import render_all
    [mpijob] = render_all(decision.job)
    assert mpijob["spec"]["runPolicy"]["schedulingPolicy"]["queue"] == "team-a"
    fields = ["workloadPriorityClassName", "resources.priorityClassName", "resources.schedulerName",
              "runPolicy.schedulingPolicy.queue", "runPolicy.schedulingPolicy.priorityClass",
              "runPolicy.schedulingPolicy.scheduleTimeoutSeconds", "resources.cpu", "resources.memory"]
    closed = decide(job(queueName="q", workloadPriorityClassName="urgent", resources={
        "priorityClassName": "x", "schedulerName": "y", "cpu": "1", "memory": "1Gi"},
        runPolicy={"schedulingPolicy": {"queue": "root", "priorityClass": "high", "scheduleTimeoutSeconds": 1}}),
        TEAM, [policy("p", limits={"forbiddenFields": fields})])
    assert sorted(e.path for e in closed.violations) == sorted(f"spec.{f}" for f in fields)


@pytest.mark.parametrize(("selector", "labels", "selected"), [
    ({}, {}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]}, {"tier": "gold"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, {"tier": "gold"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
])
def test_namespace_selectors_mean_what_kubernetes_label_selectors_mean(selector: dict, labels: dict, selected: bool) -> None:
    assert selects(LabelSelector.model_validate(selector), labels) is selected


@pytest.mark.parametrize(("spec", "path"), [
    ({"namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "In"}]}}, "spec.namespaceSelector.matchExpressions[0].values"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["x"]}]}},
     "spec.namespaceSelector.matchExpressions[0].values"),
    ({"defaults": {"queueName": "a"}, "forced": {"queueName": "b"}}, "spec.defaults"),
    ({"limits": {"forbiddenFields": ["task"]}}, "spec.limits.forbiddenFields[0]"),
    ({"limits": {"maxGpusPerJob": -1}}, "spec.limits.maxGpusPerJob"),
    ({"defaults": {"output": {"uri": "ftp://x"}}}, "spec.defaults.output.uri"),
])
def test_an_invalid_policy_is_refused_with_the_field(spec: dict, path: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "p"},
                      "spec": spec})
    assert path in [error.path for error in refused.value.errors]


# ---------------------------------------------------------------- properties

limits = st.fixed_dictionaries({}, optional={
    "maxGpusPerJob": st.integers(0, 64), "maxWorkers": st.integers(1, 16), "maxGpusPerWorker": st.integers(0, 16),
    "allowedPresets": st.lists(st.sampled_from(["base", "large", "custom"]), unique=True),
    "allowedImages": st.lists(st.sampled_from(["registry.example.com/*", "registry.example.com/team-a/*", "*:stable"]),
                              max_size=2),
})
values = st.fixed_dictionaries({}, optional={
    "queueName": st.sampled_from(["team-a", "shared"]), "precision": st.sampled_from(["fp32", "fp16", "bf16"]),
    "priorityClassName": st.sampled_from(["low", "high"]),
})
jobs = st.fixed_dictionaries({
    "workers": st.integers(1, 16), "gpusPerWorker": st.integers(0, 16),
    "preset": st.sampled_from(["base", "large"]),
    "image": st.sampled_from([None, "registry.example.com/team-a/trainer:1", "registry.example.com/x:stable", "docker.io/x:1"]),
})


@given(st.lists(st.tuples(limits, values, values), min_size=1, max_size=3), jobs)
def test_an_allowed_job_exceeds_no_limit_and_is_always_a_valid_job(generated: list, drawn: dict) -> None:
    import fnmatch

    policies = [policy(f"p{i}", limits=lim, defaults={k: v for k, v in defaults.items() if k not in forced}, forced=forced)
                for i, (lim, defaults, forced) in enumerate(generated)]  # a field both defaulted and forced is refused
    body = job(resources={"workers": drawn["workers"], "gpusPerWorker": drawn["gpusPerWorker"]},
               model={**GLUE["spec"]["model"], "preset": drawn["preset"]}, **({"image": drawn["image"]} if drawn["image"] else {}))
    decision = decide(body, TEAM, policies)
    assert decision.job is not None  # what the policies give a valid job is a valid job
    for error in decision.violations:
        assert error.path.startswith("spec.") and "BertTrainingPolic" in error.message
    if decision.violations:
        return
    spec = decision.job.spec
    gpus = spec.resources.workers * spec.resources.gpus_per_worker
    for given_policy in policies:
        limit = given_policy.spec.limits
        assert limit.max_gpus_per_job is None or gpus <= limit.max_gpus_per_job
        assert limit.max_workers is None or spec.resources.workers <= limit.max_workers
        assert limit.max_gpus_per_worker is None or spec.resources.gpus_per_worker <= limit.max_gpus_per_worker
        assert limit.allowed_presets is None or spec.model.preset in limit.allowed_presets
        assert limit.allowed_images is None or spec.image is None or any(
            fnmatch.fnmatchcase(spec.image, glob) for glob in limit.allowed_images)
        for key, field in (("queueName", "queue_name"), ("precision", "precision")):
            forced = given_policy.spec.forced.model_dump(by_alias=True).get(key)
            assert forced is None or getattr(spec, field) == forced
