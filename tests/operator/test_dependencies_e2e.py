"""The end-to-end example applied at once to the emulated API (strict layer, real operator process, webhook on): each
MPIJob is created only after the job it takes inputs from succeeded, with the resolved URIs; a failed producer fails
its dependents; a cycle is refused by the webhook and, with the webhook bypassed, failed by the operator.

The resync is slow on purpose (60 s): a dependent goes on because its producer's phase change wakes it."""

from __future__ import annotations

import copy
import time
from typing import Any, Iterator

import pytest
import yaml

from bert_operator.api.parse import parse_text
from bert_operator.dependencies import resolve_file
from bert_operator.render import render_all
from tests.chart.test_operator_access import Served
from tests.conftest import REPO, rank_command
from tests.operator.cluster import EmulatedCluster
from tests.operator.fakes import condition
from tests.operator.test_policy_e2e import wait_for_webhook, webhooked_operator

NS = "ml-training"
END_TO_END = list(yaml.safe_load_all((REPO / "examples" / "bert-end-to-end.yaml").read_text()))
TINY = REPO / "examples" / "bertjob-tiny.yaml"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with webhooked_operator(tmp_path_factory.mktemp("dependencies"), {NS: {}, "default": {}}, 60.0) as served:
        yield served


def status(cluster: EmulatedCluster, name: str) -> dict[str, Any]:
    return cluster.job(NS, name).get("status") or {}


def mpijob_names(cluster: EmulatedCluster) -> set[str]:
    return {m["metadata"]["name"] for m in cluster.mpijobs(NS)}


def launcher_args(cluster: EmulatedCluster, name: str) -> list[str]:
    mpijob = next(m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == name)
    return [str(a) for a in mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def succeed(cluster: EmulatedCluster, mpijob: str) -> None:
    cluster.wait(lambda: mpijob in mpijob_names(cluster), what=f"MPIJob {mpijob}")
    cluster.set_mpijob_conditions(NS, mpijob, "Created", "Running", "Succeeded")


def renamed(document: dict[str, Any], suffix: str, **refs: Any) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    copied["metadata"]["name"] += suffix
    for path, target in refs.items():
        node = copied["spec"]
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if target is None:
            node.pop(last, None)
        else:
            node[last] = target
    return copied


def test_the_end_to_end_file_applied_at_once_runs_in_order_with_the_resolved_uris(served: Served) -> None:
    cluster = served.cluster
    for document in END_TO_END:  # all four at once, as `kubectl apply -f` sends them
        cluster.apply_job(document, uid=f"uid-{document['metadata']['name']}")
    cluster.wait(lambda: "bert-data-prepare" in mpijob_names(cluster), what="the data job's first MPIJob")
    for name, producer in (("bert-pretrain", "bert-data"), ("bert-squad", "bert-pretrain"), ("bert-mrpc", "bert-pretrain")):
        waiting = cluster.wait(lambda: condition(status(cluster, name), "Waiting").get("status") == "True"
                               and status(cluster, name), what=f"{name} Waiting")
        assert waiting["phase"] == "Pending" and condition(waiting, "Waiting")["reason"] == "DependencyNotReady"
        assert producer in condition(waiting, "Waiting")["message"]
    assert mpijob_names(cluster) == {"bert-data-prepare"}

    succeed(cluster, "bert-data-prepare")
    succeed(cluster, "bert-data-prepare-seq512")
    cluster.wait(lambda: "bert-pretrain-phase1" in mpijob_names(cluster), what="pretraining, after the data job")
    assert status(cluster, "bert-data")["phase"] == "Succeeded"
    args = launcher_args(cluster, "bert-pretrain-phase1")
    assert "seq_len_128_max_pred_20" in flag(args, "--input_files_dir")
    resolved = status(cluster, "bert-pretrain")["resolved"]  # kept by the CRD's status schema
    assert resolved["dataset"] == {"uri": "s3://bert-data/tfrecord", "credentialsSecret": "bert-s3-credentials"}
    assert [p.split("_max_pred")[0] for p in resolved["dataPaths"]] == ["lower_case_1_seq_len_128",
                                                                       "lower_case_1_seq_len_512"]
    time.sleep(1.0)
    assert mpijob_names(cluster) == {"bert-data-prepare", "bert-data-prepare-seq512", "bert-pretrain-phase1"}

    succeed(cluster, "bert-pretrain-phase1")
    succeed(cluster, "bert-pretrain-phase2")
    assert "seq_len_512_max_pred_80" in flag(launcher_args(cluster, "bert-pretrain-phase2"), "--input_files_dir")
    cluster.wait(lambda: {"bert-squad-squad", "bert-mrpc-glue"} <= mpijob_names(cluster), what="both fine-tunings")
    for mpijob in ("bert-squad-squad", "bert-mrpc-glue"):
        args = launcher_args(cluster, mpijob)
        assert flag(args, "--init_checkpoint") == "s3://bert-results/bert-pretrain/phase2"
        assert flag(args, "--vocab_file") == "s3://bert-models/uncased_L-24_H-1024_A-16/vocab.txt"
    squad = cluster.wait(lambda: (s := status(cluster, "bert-squad")).get("resolved") and s, what="status.resolved")
    assert squad["resolved"]["initCheckpoint"] == "s3://bert-results/bert-pretrain/phase2"
    assert {d["name"]: d["phase"] for d in squad["dependencies"]} == {"bert-pretrain": "Succeeded",
                                                                      "bert-data": "Succeeded"}
    assert condition(squad, "Waiting")["status"] == "False"
    pretrain = status(cluster, "bert-pretrain")
    assert pretrain["results"]["artifacts"] == [
        {"stage": "phase1", "format": "hf", "uri": "s3://bert-results/bert-pretrain/phase1/export/hf"},
        {"stage": "phase2", "format": "hf", "uri": "s3://bert-results/bert-pretrain/phase2/export/hf"}]


def test_a_failed_producer_fails_the_job_that_waits_for_it(served: Served) -> None:
    cluster = served.cluster
    data, pretrain = END_TO_END[0], END_TO_END[1]
    cluster.apply_job(renamed(pretrain, "-2", **{"dataset.fromJob": "bert-data-2"}), uid="uid-p2")  # before its producer
    cluster.apply_job(renamed(data, "-2"), uid="uid-d2")
    cluster.wait(lambda: "bert-data-2-prepare" in mpijob_names(cluster), what="the data job's MPIJob")
    cluster.set_mpijob_conditions(NS, "bert-data-2-prepare", "Created", "Failed")
    failed = cluster.wait(lambda: (s := status(cluster, "bert-pretrain-2")).get("phase") == "Failed" and s,
                          what="the dependent failed")
    reason = condition(failed, "Failed")
    assert reason["reason"] == "DependencyFailed"
    assert reason["message"].startswith("spec.dataset.fromJob: BertTrainingJob bert-data-2 Failed (")
    assert not any(name.startswith("bert-pretrain-2") for name in mpijob_names(cluster))
    events = [(e["type"], e["reason"]) for e in cluster.events() if e["involved_object"]["name"] == "bert-pretrain-2"]
    assert ("Warning", "DependencyFailed") in events


def test_a_producer_deleted_before_it_succeeded_fails_the_job_that_waits_for_it(served: Served) -> None:
    cluster = served.cluster
    data, squad = END_TO_END[0], END_TO_END[2]
    cluster.apply_job(renamed(data, "-3"), uid="uid-d3")
    cluster.apply_job(renamed(squad, "-3", **{"model.vocabFrom": {"fromJob": "bert-data-3"},
                                              "model.initCheckpointFrom": None, "model.initCheckpoint": "s3://bert-models/ckpt"}),
                      uid="uid-s3")
    cluster.wait(lambda: (status(cluster, "bert-squad-3").get("dependencies") or [{}])[0].get("uid") == "uid-d3",
                 what="the dependent saw its producer")
    cluster.custom.delete_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "bert-data-3")
    failed = cluster.wait(lambda: (s := status(cluster, "bert-squad-3")).get("phase") == "Failed" and s,
                          what="the dependent failed")
    assert condition(failed, "Failed")["message"] == (
        "spec.model.vocabFrom.fromJob: BertTrainingJob bert-data-3 (uid uid-d3) was deleted before it succeeded; "
        "apply it again, then this job again")


def test_a_cycle_is_refused_at_admission_and_failed_by_the_operator_if_it_gets_past(served: Served) -> None:
    cluster = served.cluster
    wait_for_webhook(served)
    data, pretrain = END_TO_END[0], END_TO_END[1]
    first = renamed(pretrain, "-loop", **{"dataset.fromJob": "bert-data-loop"})
    second = renamed(data, "-loop", **{"model": {"vocabFrom": {"fromJob": "bert-pretrain-loop"}}})
    assert served.review(first)["allowed"] is True  # its producer does not exist yet: it will wait
    cluster.apply_job(first, uid="uid-loop-1")
    cluster.wait(lambda: condition(status(cluster, "bert-pretrain-loop"), "Waiting").get("status") == "True",
                 what="the first job waiting")
    refused = served.review(second)
    assert refused["allowed"] is False and refused["status"]["code"] == 422
    assert refused["status"]["message"] == (
        "spec.model.vocabFrom.fromJob: jobs bert-data-loop -> bert-pretrain-loop -> bert-data-loop wait for each "
        "other's outputs, so none can start; break the cycle")
    cluster.apply_job(second, uid="uid-loop-2")  # the webhook bypassed: straight to the store
    for name in ("bert-data-loop", "bert-pretrain-loop"):
        ended = cluster.wait(lambda: (s := status(cluster, name)).get("phase") == "Failed" and s, what=f"{name} Failed")
        assert condition(ended, "Failed")["reason"] in ("DependencyCycle", "DependencyFailed")
    assert condition(status(cluster, "bert-data-loop"), "Failed")["reason"] == "DependencyCycle"
    assert not any(name.endswith("-loop") or "-loop-" in name for name in mpijob_names(cluster))


def test_the_tiny_file_runs_on_the_cluster_as_local_mode_and_bertjob_render_run_it(served: Served) -> None:
    """The same file, the same way: applied at once, the operator creates each stage's MPIJob in the order local mode
    runs them, with the trainer command `bertjob render` gives (which tests/local checks local mode runs)."""
    cluster = served.cluster
    expected = {m["metadata"]["name"]: m for job in resolve_file(parse_text(TINY.read_text(), TINY.name))
                for m in render_all(job)}
    for document in yaml.safe_load_all(TINY.read_text()):
        cluster.apply_job(document, uid=f"uid-{document['metadata']['name']}")
    created: list[str] = []
    for name in expected:  # tiny-data-prepare, ..., tiny-cola-glue: the order local mode runs them in
        found = cluster.wait(lambda: {m["metadata"]["name"]: m for m in cluster.mpijobs("default")}.get(name),
                             what=f"MPIJob {name}")
        assert set(m["metadata"]["name"] for m in cluster.mpijobs("default")) == {*created, name}
        launcher = [str(a) for a in found["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]]
        want = expected[name]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
        assert rank_command(launcher) == rank_command(want), name
        cluster.set_mpijob_conditions("default", name, "Created", "Running", "Succeeded")
        created.append(name)
    final = cluster.wait(lambda: (s := cluster.job("default", "tiny-cola").get("status") or {}).get("phase")
                         == "Succeeded" and s, what="tiny-cola Succeeded")
    assert final["resolved"]["initCheckpoint"] == "pvc://bert-tiny/pretrain/phase2"
