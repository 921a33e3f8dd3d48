"""Bad specs are refused with the field path and what is allowed; never a crash."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
import yaml

from bert_operator.api import SpecError
from bert_operator.api.parse import parse_job, parse_text
from bert_operator.dependencies import resolve_file
from tests.conftest import REPO

BASE = yaml.safe_load((REPO / "examples" / "bert-large-pretrain.yaml").read_text())
SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
PREP = yaml.safe_load((REPO / "examples" / "prepare-data.yaml").read_text())


def mutate(base: dict, fn: Callable[[dict], Any]) -> dict:
    document = copy.deepcopy(base)
    fn(document)
    return document


def deep(levels: int) -> dict:
    """{"a": {"a": ... {}}} nested `levels` deep, built without recursion."""
    root: dict = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


def spec(doc: dict) -> dict:
    return doc["spec"]


def phases(doc: dict) -> list[dict]:
    return doc["spec"]["task"]["pretrain"]["phases"]


CASES: list[tuple[str, dict, str, str]] = [
    ("negative gpus", mutate(BASE, lambda d: spec(d)["resources"].update(gpusPerWorker=-1)),
     "spec.resources.gpusPerWorker", "must be >= 0, got -1"),
    ("zero workers", mutate(BASE, lambda d: spec(d)["resources"].update(workers=0)),
     "spec.resources.workers", "must be >= 1, got 0"),
    ("gpus not a number", mutate(BASE, lambda d: spec(d)["resources"].update(gpusPerWorker="eight")),
     "spec.resources.gpusPerWorker", "must be an integer, got 'eight'"),
    ("unknown spec field", mutate(BASE, lambda d: spec(d).update(gpus=8)),
     "spec.gpus", "unknown field; allowed fields here: task, model"),
    ("unknown nested field", mutate(BASE, lambda d: phases(d)[0].update(seqLen=128)),
     "spec.task.pretrain.phases[0].seqLen", "unknown field; allowed fields here: maxSeqLength"),
    ("bad precision", mutate(BASE, lambda d: spec(d).update(precision="fp8")),
     "spec.precision", "must be one of 'fp32', 'fp16' or 'bf16', got 'fp8'"),
    ("bad optimizer", mutate(BASE, lambda d: spec(d)["optimizer"].update(name="sgd")),
     "spec.optimizer.name", "must be one of 'lamb' or 'adam', got 'sgd'"),
    ("no task", mutate(BASE, lambda d: spec(d).update(task={})),
     "spec.task", "must set exactly one of pretrain, squad, glue, prepareData; got none"),
    ("two tasks", mutate(BASE, lambda d: spec(d)["task"].update(glue={})),
     "spec.task", "got pretrain and glue"),
    ("fractions do not sum to 1", mutate(BASE, lambda d: phases(d)[1].update(stepsFraction=0.2)),
     "spec.task.pretrain.phases", "stepsFraction values must sum to 1, got 1.1"),
    ("predictions above seq length", mutate(BASE, lambda d: phases(d)[0].update(maxPredictionsPerSeq=200)),
     "spec.task.pretrain.phases[0].maxPredictionsPerSeq", "must be <= maxSeqLength (128), got 200"),
    ("seq above position embeddings", mutate(BASE, lambda d: phases(d)[1].update(maxSeqLength=1024)),
     "spec.task.pretrain.phases[1].maxSeqLength", "must be <= the model's max_position_embeddings (512), got 1024"),
    ("warmup longer than phase", mutate(BASE, lambda d: phases(d)[1].update(warmupSteps=5000)),
     "spec.task.pretrain.phases[1].warmupSteps", "must be <= the phase's 782 steps, got 5000"),
    ("phase with no steps", mutate(BASE, lambda d: (spec(d)["task"]["pretrain"].update(trainSteps=5), phases(d)[1].update(warmupSteps=0), phases(d)[0].update(warmupSteps=0, stepsFraction=0.95), phases(d)[1].update(stepsFraction=0.05))),
     "spec.task.pretrain.phases[1].stepsFraction", "gives 0 steps of trainSteps 5"),
    ("no phases", mutate(BASE, lambda d: spec(d)["task"]["pretrain"].update(phases=[])),
     "spec.task.pretrain.phases", "must have at least 1 item"),
    ("bad dataset uri", mutate(BASE, lambda d: spec(d)["dataset"].update(uri="gs://bucket/x")),
     "spec.dataset.uri", "must be s3://bucket/prefix or pvc://claim/path, got 'gs://bucket/x'"),
    ("endpoint on a pvc", mutate(BASE, lambda d: spec(d)["output"].update(uri="pvc://results/x")),
     "spec.output.endpoint", "only applies to s3:// URIs"),
    ("bad shm size", mutate(BASE, lambda d: spec(d)["resources"].update(shmSize="lots")),
     "spec.resources.shmSize", "must be a Kubernetes quantity such as 500m, 8 or 16Gi, got 'lots'"),
    ("name not DNS-1035", mutate(BASE, lambda d: d["metadata"].update(name="1-Bert")),
     "metadata.name", "must be a DNS-1035 label"),
    ("name too long for pod names", mutate(BASE, lambda d: d["metadata"].update(name="b" * 50)),
     "metadata.name", "at most 63 are allowed; use a name of at most 47 characters"),
    ("custom without config", mutate(BASE, lambda d: spec(d)["model"].update(preset="custom")),
     "spec.model.config", "required when preset is custom"),
    ("config with a preset", mutate(BASE, lambda d: spec(d)["model"].update(config={"hidden_size": 64})),
     "spec.model.config", "only allowed with preset: custom, got preset 'large'"),
    ("heads do not divide hidden", mutate(BASE, lambda d: spec(d)["model"].update(preset="custom", config={"hidden_size": 100, "num_attention_heads": 3})),
     "spec.model.config.num_attention_heads", "must divide hidden_size (100), got 3"),
    ("unknown bert config field", mutate(BASE, lambda d: spec(d)["model"].update(preset="custom", config={"hidden_layers": 2})),
     "spec.model.config.hidden_layers", "unknown field; allowed fields here: vocab_size"),
    ("squad without vocab", mutate(SQUAD, lambda d: spec(d)["model"].pop("vocab")),
     "spec.model.vocab", "required for squad, glue and prepareData"),
    ("squad without checkpoint", mutate(SQUAD, lambda d: spec(d)["model"].pop("initCheckpoint")),
     "spec.model.initCheckpoint", "required for squad and glue"),
    ("doc stride too long", mutate(SQUAD, lambda d: spec(d)["task"]["squad"].update(docStride=384)),
     "spec.task.squad.docStride", "must be < maxSeqLength (384), got 384"),
    ("squad version", mutate(SQUAD, lambda d: spec(d)["task"]["squad"].update(version="3.0")),
     "spec.task.squad.version", "must be one of '1.1' or '2.0', got '3.0'"),
    ("escaping data path", mutate(SQUAD, lambda d: spec(d)["task"]["squad"].update(trainFile="../secrets.json")),
     "spec.task.squad.trainFile", "must be a relative path inside the dataset"),
    ("fewer shards than workers", mutate(PREP, lambda d: spec(d)["task"]["prepareData"].update(shards=2)),
     "spec.task.prepareData.shards", "must be >= resources.workers (4)"),
    ("masked lm prob out of range", mutate(PREP, lambda d: spec(d)["task"]["prepareData"].update(maskedLmProb=1.5)),
     "spec.task.prepareData.maskedLmProb", "must be < 1.0, got 1.5"),
    ("toleration exists with value", mutate(BASE, lambda d: spec(d)["resources"]["tolerations"][0].update(value="x")),
     "spec.resources.tolerations[0].value", "must be empty when operator is Exists"),
    ("wrong kind", mutate(BASE, lambda d: d.update(kind="MPIJob")),
     "kind", "must be one of 'BertTrainingJob', got 'MPIJob'"),
    ("wrong api version", mutate(BASE, lambda d: d.update(apiVersion="bertoperator.io/v1")),
     "apiVersion", "must be one of 'bertoperator.io/v1alpha1', got 'bertoperator.io/v1'"),
    ("missing dataset", mutate(BASE, lambda d: spec(d).pop("dataset")),
     "spec.dataset", "required field is missing"),
    ("secret name with spaces", mutate(BASE, lambda d: spec(d)["dataset"].update(credentialsSecret="my secret")),
     "spec.dataset.credentialsSecret", "must be a DNS-1123 subdomain"),
    # What validate used to accept and the cluster refuses (issue 13 C) ...
    ("queue name too long for a label", mutate(BASE, lambda d: spec(d).update(queueName="q" * 64)),
     "spec.queueName", "must be a label value: at most 63"),
    ("workload priority without a queue", mutate(BASE, lambda d: (spec(d).pop("queueName", None),
                                                                  spec(d).update(workloadPriorityClassName="high"))),
     "spec.workloadPriorityClassName", "only applies with queueName (a Kueue WorkloadPriorityClass)"),
    ("negative checkpoints to keep", mutate(BASE, lambda d: spec(d)["output"].update(keepCheckpoints=-1)),
     "spec.output.keepCheckpoints", "must be >= 0, got -1"),
    ("negative max restarts", mutate(BASE, lambda d: spec(d)["runPolicy"].update(maxRestarts=-1)
                                     if "runPolicy" in spec(d) else spec(d).update(runPolicy={"maxRestarts": -1})),
     "spec.runPolicy.maxRestarts", "must be >= 0, got -1"),
    ("toleration Equal without key", mutate(BASE, lambda d: spec(d)["resources"].update(tolerations=[{"operator": "Equal", "value": "x"}])),
     "spec.resources.tolerations[0].operator", "must be Exists when key is empty"),
    ("tolerationSeconds without NoExecute", mutate(BASE, lambda d: spec(d)["resources"].update(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}])),
     "spec.resources.tolerations[0].tolerationSeconds", "only applies with effect NoExecute"),
    ("tolerationSeconds beyond int64", mutate(BASE, lambda d: spec(d)["resources"].update(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2**63}])),
     "spec.resources.tolerations[0].tolerationSeconds", "must fit in a 64-bit integer"),
    ("nodeSelector key not a label key", mutate(BASE, lambda d: spec(d)["resources"].update(nodeSelector={"gpu type": "a100"})),
     "spec.resources.nodeSelector['gpu type']", "must be a label key"),
    ("nodeSelector value not a label value", mutate(BASE, lambda d: spec(d)["resources"].update(nodeSelector={"gpu": "a100 80gb"})),
     "spec.resources.nodeSelector['gpu']", "must be a label value"),
    ("image with spaces", mutate(BASE, lambda d: spec(d).update(image="registry/trainer:1 --privileged")),
     "spec.image", "an image reference without spaces"),
    ("priority class not a DNS name", mutate(BASE, lambda d: spec(d)["resources"].update(priorityClassName="High Priority")),
     "spec.resources.priorityClassName", "must be a DNS-1123 subdomain"),
    ("scheduler not a DNS name", mutate(BASE, lambda d: spec(d)["resources"].update(schedulerName="Volcano!")),
     "spec.resources.schedulerName", "must be a DNS-1123 subdomain"),
    ("affinity that is not an Affinity", mutate(BASE, lambda d: spec(d)["resources"].update(affinity={"nodeAffinity": 5})),
     "spec.resources.affinity.nodeAffinity", "must be an object (mapping), got 5"),
    ("affinity with an unknown field", mutate(BASE, lambda d: spec(d)["resources"].update(affinity={"nodeAffinty": {}})),
     "spec.resources.affinity", "unknown field; allowed fields here: nodeAffinity, podAffinity, podAntiAffinity"),
    ("affinity term without its required key", mutate(BASE, lambda d: spec(d)["resources"].update(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"operator": "In"}]}]}}})),
     "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]",
     "required field 'key' is missing"),
    ("pvc path climbing out of its claim", mutate(BASE, lambda d: spec(d).update(output={"uri": "pvc://claim/../../etc"})),
     "spec.output.uri", "must not contain '..' segments"),
    ("vocab path climbing out", mutate(SQUAD, lambda d: spec(d)["model"].update(vocab="pvc://models/../../etc/passwd")),
     "spec.model.vocab", "must not contain '..' segments"),
    ("a number given as text", mutate(BASE, lambda d: spec(d)["resources"].update(workers="4")),
     "spec.resources.workers", "must be an integer, got '4'"),
    ("true given for a number", mutate(BASE, lambda d: spec(d)["resources"].update(workers=True)),
     "spec.resources.workers", "must be an integer, got True"),
    ("not a number", mutate(BASE, lambda d: phases(d)[0].update(learningRate=float("nan"))),
     "spec.task.pretrain.phases[0].learningRate", "must be a finite number, got nan"),
    ("infinity", mutate(BASE, lambda d: phases(d)[0].update(learningRate=float("inf"))),
     "spec.task.pretrain.phases[0].learningRate", "must be a finite number, got inf"),
    ("a 400-digit integer", mutate(BASE, lambda d: spec(d)["task"]["pretrain"].update(trainSteps=10**400)),
     "spec.task.pretrain.trainSteps", "must fit in a 64-bit integer"),
    ("a spec nested 200 levels deep", mutate(BASE, lambda d: spec(d)["resources"].update(affinity=deep(200))),
     "spec.resources.affinity.a.a.a", "nested deeper than 64 levels"),
    # Issue 14: what a shared cluster's schedulers and admission would refuse.
    ("gang larger than the workers", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"minAvailable": 5})),
     "spec.runPolicy.schedulingPolicy.minAvailable", "must be <= resources.workers (4)"),
    ("gang of zero", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"minAvailable": 0})),
     "spec.runPolicy.schedulingPolicy.minAvailable", "must be >= 1, got 0"),
    ("schedule timeout beyond int32", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"scheduleTimeoutSeconds": 2**31})),
     "spec.runPolicy.schedulingPolicy.scheduleTimeoutSeconds", "must be <= 2147483647"),
    ("min resources not a quantity", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"minResources": {"nvidia.com/gpu": "lots"}})),
     "spec.runPolicy.schedulingPolicy.minResources.nvidia.com/gpu", "must be a Kubernetes quantity"),
    ("min resources not a resource name", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"minResources": {"nvidia gpu": 8}})),
     "spec.runPolicy.schedulingPolicy.minResources['nvidia gpu']", "must be a resource name"),
    ("PodGroup priority class not a DNS name", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"priorityClass": "High"})),
     "spec.runPolicy.schedulingPolicy.priorityClass", "must be a DNS-1123 subdomain"),
    ("unknown scheduling field", mutate(BASE, lambda d: spec(d)["runPolicy"].update(schedulingPolicy={"minMember": 2})),
     "spec.runPolicy.schedulingPolicy.minMember", "unknown field; allowed fields here: minAvailable, queue, minResources"),
    ("TTL beyond int32 (the MPIJob's type)", mutate(BASE, lambda d: spec(d)["runPolicy"].update(ttlSecondsAfterFinished=2**31)),
     "spec.runPolicy.ttlSecondsAfterFinished", "must be <= 2147483647"),
    ("launcher retries beyond int32", mutate(BASE, lambda d: spec(d)["runPolicy"].update(backoffLimit=2**31)),
     "spec.runPolicy.backoffLimit", "must be <= 2147483647"),
    ("pod label the operator owns", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"labels": {"bertoperator.io/job-name": "x"}})),
     "spec.resources.podTemplate.labels['bertoperator.io/job-name']", "is set by bert-operator; podTemplate may set any key but"),
    ("pod label the MPI Operator owns", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"labels": {"training.kubeflow.org/job-role": "worker"}})),
     "spec.resources.podTemplate.labels['training.kubeflow.org/job-role']", "is set by the MPI Operator"),
    ("managed-by label", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"labels": {"app.kubernetes.io/managed-by": "me"}})),
     "spec.resources.podTemplate.labels['app.kubernetes.io/managed-by']", "is set by bert-operator (its pod label)"),
    ("queue label by hand", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"labels": {"kueue.x-k8s.io/queue-name": "q"}})),
     "spec.resources.podTemplate.labels['kueue.x-k8s.io/queue-name']", "is set by Kueue (set from spec.queueName)"),
    ("priority label by hand", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {"kueue.x-k8s.io/priority-class": "p"}})),
     "spec.resources.podTemplate.annotations['kueue.x-k8s.io/priority-class']", "set from spec.workloadPriorityClassName"),
    ("PodGroup annotation by hand", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {"scheduling.k8s.io/group-name": "g"}})),
     "spec.resources.podTemplate.annotations['scheduling.k8s.io/group-name']", "Volcano's PodGroup annotation"),
    ("pod label key with a space", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"labels": {"cost center": "x"}})),
     "spec.resources.podTemplate.labels['cost center']", "must be a label key"),
    ("pod label value too long", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"labels": {"team": "t" * 64}})),
     "spec.resources.podTemplate.labels['team']", "must be a label value: at most 63"),
    ("pod annotation key bad prefix", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {"Example.COM/x": "v"}})),
     "spec.resources.podTemplate.annotations['Example.COM/x']", "annotation key prefix must be a DNS subdomain"),
    ("AppArmor unconfined by annotation", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}})),
     "spec.resources.podTemplate.annotations['container.apparmor.security.beta.kubernetes.io/worker']",
     "would fail PodSecurity restricted (AppArmor: allowed are runtime/default and localhost/<profile>)"),
    ("seccomp unconfined by pod annotation", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}})),
     "spec.resources.podTemplate.annotations['seccomp.security.alpha.kubernetes.io/pod']",
     "would fail PodSecurity restricted (seccomp: allowed is runtime/default"),
    ("seccomp unconfined by container annotation", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {"container.seccomp.security.alpha.kubernetes.io/worker": "docker/unconfined"}})),
     "spec.resources.podTemplate.annotations['container.seccomp.security.alpha.kubernetes.io/worker']",
     "allowed are runtime/default and localhost/<relative profile path>"),
    ("pod annotations over 256 KiB", mutate(BASE, lambda d: spec(d)["resources"].update(podTemplate={"annotations": {f"a{i}": "x" * 60_000 for i in range(5)}})),
     "spec.resources.podTemplate.annotations", "at most 262144 are allowed"),
    ("dataset storage not a quantity", mutate(BASE, lambda d: spec(d)["resources"].update(datasetStorage="a lot")),
     "spec.resources.datasetStorage", "must be a Kubernetes quantity"),
    # ... and credentials where they do not belong (D2).
    ("credentials in an endpoint URL", mutate(BASE, lambda d: spec(d)["dataset"].update(endpoint="http://KEY:SECRET@minio.minio.svc:9000")),
     "spec.dataset.endpoint", "without user:password@"),
]


@pytest.mark.parametrize(("document", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_names_the_field_and_what_is_allowed(document: dict, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_job(document)
    messages = [str(e) for e in caught.value.errors]
    matching = [m for m in messages if m.startswith(f"{path}: ")]
    assert matching, f"no error on {path}: {messages}"
    assert any(fragment in m for m in matching), matching


def test_a_job_without_output_parses_but_runs_nowhere_until_a_policy_gives_one() -> None:
    """The API server must accept it (a BertTrainingPolicy's defaults.output may give the output); what runs it
    (the CLI here, the operator and the webhook in test_reconcile_policy.py) refuses it when nothing did."""
    job = parse_job(mutate(BASE, lambda d: spec(d).pop("output")))
    with pytest.raises(SpecError) as caught:
        resolve_file([job], "job.yaml")
    [error] = caught.value.errors
    assert error.path == "spec.output.uri" and error.message.startswith("required, and no BertTrainingPolicy selecting")


def test_at_least_twenty_distinct_invalid_specs() -> None:
    assert len({c[2] for c in CASES}) >= 20


def test_every_broken_rule_is_reported_at_once() -> None:
    document = mutate(BASE, lambda d: (phases(d)[0].update(maxPredictionsPerSeq=200), spec(d)["resources"].update(gpusPerWorker=-3, workers=0)))
    with pytest.raises(SpecError) as caught:
        parse_job(document)
    paths = {e.path for e in caught.value.errors}
    assert {"spec.resources.gpusPerWorker", "spec.resources.workers"} <= paths


def test_invalid_yaml_reports_line_and_column() -> None:
    with pytest.raises(SpecError) as caught:
        parse_text("apiVersion: x\nspec: [unclosed\n", "job.yaml")
    assert str(caught.value).startswith("job.yaml: <yaml>: invalid YAML at line ")


def test_multi_document_errors_name_the_document() -> None:
    good = yaml.safe_dump(BASE)
    bad = yaml.safe_dump(mutate(BASE, lambda d: spec(d).update(xla="maybe")))
    with pytest.raises(SpecError) as caught:
        parse_text(f"{good}---\n{bad}", "jobs.yaml")
    assert [str(e) for e in caught.value.errors] == ["jobs.yaml[1]: spec.xla: must be true or false, got 'maybe'"]


def test_non_mapping_document() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_text("- a\n- b\n", "list.yaml")
