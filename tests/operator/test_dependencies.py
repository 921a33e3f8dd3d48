"""Jobs that take their inputs from other jobs: the rules, the plan (wait, resolve, fail) and the file-level checks of
`bertjob validate` / `render`, as pure functions (milliseconds each)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from bert_operator import dependencies as deps
from bert_operator.api import SpecError
from bert_operator.api.parse import parse_job, parse_text
from bert_operator.cli import main
from bert_operator.reconcile.observe import Observed, observe
from bert_operator.reconcile.plan import CreateMPIJob, plan
from tests.conftest import REPO
from tests.operator.fakes import condition

NOW = "2026-12-02T08:00:00Z"
END_TO_END = REPO / "examples" / "bert-end-to-end.yaml"


def documents() -> dict[str, dict[str, Any]]:
    """The end-to-end example's four jobs by name, each with a uid and generation as the API server gives them."""
    out = {}
    for document in yaml.safe_load_all(END_TO_END.read_text()):
        name = document["metadata"]["name"]
        document["metadata"].update(uid=f"uid-{name}", generation=1)
        out[name] = document
    return out


def succeeded(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**body, "status": {"phase": "Succeeded", **status}}


def args_of(action: CreateMPIJob) -> list[str]:
    container = action.body["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    return [str(arg) for arg in container["command"]]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# ------------------------------------------------------------------------- rules


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_job(document)
    return [str(error) for error in caught.value.errors]


def test_a_reference_to_another_namespace_is_refused_naming_the_field() -> None:
    squad = documents()["bert-squad"]
    squad["spec"]["model"]["initCheckpointFrom"] = {"fromJob": "team-b/bert-pretrain"}
    [error] = errors_of(squad)
    assert error.startswith("spec.model.initCheckpointFrom.fromJob: must be the name of a BertTrainingJob in this "
                            "job's namespace")
    assert "cannot be referenced" in error and "'team-b/bert-pretrain'" in error


def test_the_rules_of_references() -> None:
    jobs = documents()
    itself = copy.deepcopy(jobs["bert-pretrain"])
    itself["spec"]["dataset"] = {"fromJob": "bert-pretrain"}
    assert errors_of(itself) == ["spec.dataset.fromJob: names this job itself ('bert-pretrain'); a job cannot take "
                                 "its inputs from its own outputs"]
    both = copy.deepcopy(jobs["bert-pretrain"])
    both["spec"]["dataset"]["uri"] = "s3://bert-data/tfrecord"
    assert errors_of(both) == ["spec.dataset.fromJob: set uri or fromJob, not both"]
    neither = copy.deepcopy(jobs["bert-pretrain"])
    neither["spec"]["dataset"] = {}
    assert errors_of(neither) == ["spec.dataset.uri: required (or fromJob: a prepareData job of this namespace)"]
    glue = copy.deepcopy(jobs["bert-mrpc"])
    glue["spec"]["dataset"] = {"fromJob": "bert-data"}
    assert errors_of(glue) == ["spec.dataset.fromJob: only pretrain reads records another job makes (a prepareData "
                               "job); glue reads files, so give dataset.uri"]
    twice = copy.deepcopy(jobs["bert-squad"])
    twice["spec"]["model"].update(vocab="s3://bert-models/vocab.txt", initCheckpoint="s3://bert-models/ckpt")
    assert errors_of(twice) == ["spec.model.vocabFrom: set vocab or vocabFrom, not both",
                                "spec.model.initCheckpointFrom: set initCheckpoint or initCheckpointFrom, not both"]
    exports = copy.deepcopy(jobs["bert-data"])
    exports["spec"]["output"]["exportFormats"] = ["hf"]
    assert errors_of(exports) == ["spec.output.exportFormats: prepareData trains no model, so nothing can be "
                                  "exported; leave it unset"]
    sets = copy.deepcopy(jobs["bert-data"])
    sets["spec"]["task"]["prepareData"]["extraSets"].append({"maxSeqLength": 128, "maxPredictionsPerSeq": 20})
    assert errors_of(sets) == ["spec.task.prepareData.extraSets[1].maxSeqLength: each set needs its own maxSeqLength; "
                               "128 is already made by this job"]


# -------------------------------------------------------------------------- plan


def test_a_job_waits_for_a_producer_not_there_yet_then_one_not_done_creating_nothing() -> None:
    jobs = documents()
    pretrain = jobs["bert-pretrain"]
    waiting = plan(pretrain, {}, Observed(producers={"bert-data": None}), NOW)
    assert waiting.actions == ()
    status = waiting.status
    assert status["phase"] == "Pending" and "acceptedSpec" not in status and "startTime" not in status
    for kind, truth in (("Waiting", "True"), ("Ready", "False")):
        found = condition(status, kind)
        assert (found["status"], found["reason"]) == (truth, "DependencyNotReady")
        assert found["message"] == "waiting for BertTrainingJob bert-data (not found in this namespace yet) to succeed"
    assert [(e.kind, e.reason) for e in waiting.events] == [("Normal", "DependencyNotReady")]

    running = {**jobs["bert-data"], "status": {"phase": "Running", "progress": {"display": "40% prepare"}}}
    later = plan(pretrain, status, Observed(producers={"bert-data": running}), NOW)
    assert later.actions == () and later.events == ()  # said once, when it started waiting
    assert condition(later.status, "Waiting")["message"] == "waiting for BertTrainingJob bert-data (Running) to succeed"
    assert later.status["dependencies"] == [{"name": "bert-data", "fields": ["spec.dataset.fromJob"],
                                             "uid": "uid-bert-data", "phase": "Running"}]


def test_once_the_producer_succeeded_each_phase_reads_the_set_of_its_lengths() -> None:
    jobs = documents()
    pretrain = jobs["bert-pretrain"]
    old = plan(pretrain, {}, Observed(producers={"bert-data": None}), NOW).status
    first = plan(pretrain, old, Observed(producers={"bert-data": succeeded(jobs["bert-data"])}), NOW)
    [create] = first.actions
    assert isinstance(create, CreateMPIJob) and create.stage == "phase1"
    args = args_of(create)
    assert flag(args, "--input_files_dir") == "/data/lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_" \
                                              "seed_12345_dupe_factor_5_shard_1472_test_split_10/books_wiki_en_corpus/training"
    sync = create.body["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["initContainers"][0]
    assert "s3://bert-data/tfrecord/lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_seed_12345_dupe_" \
           "factor_5_shard_1472_test_split_10/books_wiki_en_corpus" in sync["command"] + sync.get("args", [])
    # the producer's output credentials come with its records
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in sync["env"] if "valueFrom" in e}
    assert secrets == {"bert-s3-credentials"}

    # Once created, the status records what it resolved to, and what the job waited for.
    created = {"bert-pretrain-phase1": {**create.body, "metadata": {**create.body["metadata"], "uid": "m1"}}}
    after = plan(pretrain, old, Observed(mpijobs=created, producers={"bert-data": succeeded(jobs["bert-data"])}), NOW)
    assert after.actions == ()
    resolved = after.status["resolved"]
    assert resolved["dataset"] == {"uri": "s3://bert-data/tfrecord", "credentialsSecret": "bert-s3-credentials"}
    assert [path.split("_max_pred")[0] for path in resolved["dataPaths"]] == ["lower_case_1_seq_len_128",
                                                                             "lower_case_1_seq_len_512"]
    assert resolved["output"] == {"uri": "s3://bert-results/bert-pretrain", "credentialsSecret": "bert-s3-credentials"}
    assert after.status["dependencies"][0]["phase"] == "Succeeded"
    ready = condition(after.status, "Waiting")
    assert (ready["status"], ready["reason"]) == ("False", "DependenciesReady")

    # Phase 2 is rendered from the record alone: the producer is not read again, even once it is gone.
    phase1 = {**created["bert-pretrain-phase1"], "status": {"conditions": [
        {"type": "Succeeded", "status": "True", "reason": "MPIJobSucceeded", "message": ""}]}}
    second = plan(pretrain, after.status, Observed(mpijobs={"bert-pretrain-phase1": phase1}, producers={}), NOW)
    [create2] = second.actions
    assert create2.stage == "phase2"
    assert "seq_len_512_max_pred_80" in flag(args_of(create2), "--input_files_dir")


def test_fine_tuning_takes_the_last_stage_checkpoint_and_the_data_jobs_vocab() -> None:
    jobs = documents()
    producers = {"bert-data": succeeded(jobs["bert-data"]), "bert-pretrain": succeeded(jobs["bert-pretrain"])}
    [create] = plan(jobs["bert-squad"], {}, Observed(producers=producers), NOW).actions
    args = args_of(create)
    assert flag(args, "--init_checkpoint") == "s3://bert-results/bert-pretrain/phase2"
    assert flag(args, "--vocab_file") == "s3://bert-models/uncased_L-24_H-1024_A-16/vocab.txt"
    assert flag(args, "--export_formats") == "hf,savedmodel,triton"
    earlier = copy.deepcopy(jobs["bert-mrpc"])
    earlier["spec"]["model"]["initCheckpointFrom"]["stage"] = "phase1"
    [create] = plan(earlier, {}, Observed(producers=producers), NOW).actions
    assert flag(args_of(create), "--init_checkpoint") == "s3://bert-results/bert-pretrain/phase1"


def test_a_producers_recorded_output_wins_over_its_spec() -> None:
    """A policy's defaultOutput is in the producer's status.resolved, not in its spec: that is where it wrote."""
    jobs = documents()
    pretrain = succeeded(jobs["bert-pretrain"], resolved={"output": {"uri": "s3://tenant-a/bert-pretrain"}})
    producers = {"bert-data": succeeded(jobs["bert-data"]), "bert-pretrain": pretrain}
    [create] = plan(jobs["bert-squad"], {}, Observed(producers=producers), NOW).actions
    assert flag(args_of(create), "--init_checkpoint") == "s3://tenant-a/bert-pretrain/phase2"


def failed_reason(result: Any) -> tuple[str, str]:
    failed = condition(result.status, "Failed")
    return failed["reason"], failed["message"]


def test_a_failed_producer_fails_the_job_with_its_reason_and_nothing_is_created() -> None:
    jobs = documents()
    broken = {**jobs["bert-data"], "status": {"phase": "Failed", "conditions": [
        {"type": "Failed", "status": "True", "reason": "InvalidInput", "message": "corpus: no documents"}]}}
    result = plan(jobs["bert-pretrain"], {}, Observed(producers={"bert-data": broken}), NOW)
    assert result.actions == () and result.status["phase"] == "Failed"
    assert failed_reason(result) == ("DependencyFailed", "spec.dataset.fromJob: BertTrainingJob bert-data Failed "
                                                         "(InvalidInput: corpus: no documents)")
    assert [(e.kind, e.reason) for e in result.events] == [("Warning", "DependencyFailed")]
    assert condition(result.status, "Valid")["status"] == "True"  # the spec itself is fine


def test_a_producer_deleted_or_replaced_after_it_was_seen_fails_the_job() -> None:
    jobs = documents()
    running = {**jobs["bert-data"], "status": {"phase": "Running"}}
    seen = plan(jobs["bert-pretrain"], {}, Observed(producers={"bert-data": running}), NOW).status
    gone = plan(jobs["bert-pretrain"], seen, Observed(producers={"bert-data": None}), NOW)
    assert failed_reason(gone) == ("DependencyFailed", "spec.dataset.fromJob: BertTrainingJob bert-data (uid "
                                                       "uid-bert-data) was deleted before it succeeded; apply it "
                                                       "again, then this job again")
    again = succeeded({**jobs["bert-data"], "metadata": {**jobs["bert-data"]["metadata"], "uid": "uid-new"}})
    assert failed_reason(plan(jobs["bert-pretrain"], seen, Observed(producers={"bert-data": again}), NOW))[0] == \
        "DependencyFailed"


def test_a_producer_that_cannot_give_what_is_asked_is_an_invalid_dependency_with_the_field() -> None:
    jobs = documents()
    short = copy.deepcopy(jobs["bert-data"])
    short["spec"]["task"]["prepareData"]["extraSets"] = []
    result = plan(jobs["bert-pretrain"], {}, Observed(producers={"bert-data": succeeded(short)}), NOW)
    assert failed_reason(result) == ("DependencyInvalid", "spec.task.pretrain.phases[1]: maxSeqLength/"
                                     "maxPredictionsPerSeq 512/80 has no records in prepareData job bert-data, which "
                                     "makes 128/20; add the set to its extraSets or set this phase's dataPath")
    wrong = copy.deepcopy(jobs["bert-mrpc"])
    wrong["spec"]["model"]["initCheckpointFrom"]["stage"] = "phase3"
    producers = {"bert-data": succeeded(jobs["bert-data"]), "bert-pretrain": succeeded(jobs["bert-pretrain"])}
    assert failed_reason(plan(wrong, {}, Observed(producers=producers), NOW)) == (
        "DependencyInvalid", "spec.model.initCheckpointFrom.stage: BertTrainingJob bert-pretrain has no stage "
                             "'phase3'; its stages: phase1, phase2")
    records = copy.deepcopy(jobs["bert-mrpc"])
    records["spec"]["model"]["initCheckpointFrom"] = {"fromJob": "bert-data"}
    assert failed_reason(plan(records, {}, Observed(producers=producers), NOW)) == (
        "DependencyInvalid", "spec.model.initCheckpointFrom.fromJob: BertTrainingJob bert-data is a prepareData job; "
                             "it trains no model")


def test_jobs_waiting_for_each_other_fail_with_the_cycle() -> None:
    jobs = documents()
    data = copy.deepcopy(jobs["bert-data"])  # (not a real use: a cycle needs a job that both makes and takes)
    data["spec"]["model"] = {"vocabFrom": {"fromJob": "bert-squad"}}
    chain = deps.chain("bert-pretrain", jobs["bert-pretrain"]["spec"],
                       {"bert-data": data, "bert-squad": jobs["bert-squad"]}.get)
    assert set(chain) == {"bert-data", "bert-squad"}
    result = plan(jobs["bert-pretrain"], {}, Observed(producers=chain), NOW)
    assert failed_reason(result) == ("DependencyCycle", "spec.dataset.fromJob: jobs bert-pretrain -> bert-data -> "
                                     "bert-squad -> bert-pretrain wait for each other's outputs, so none can start; "
                                     "break the cycle")


class CountingApi:
    """An MPIJob API that only counts: observe must read no MPIJob of a job that never created one."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"observe called {name}")


def test_observe_reads_the_producers_only_until_the_job_has_its_inputs() -> None:
    jobs = documents()
    asked: list[str] = []

    def lookup(namespace: str, name: str) -> dict[str, Any] | None:
        asked.append(f"{namespace}/{name}")
        return succeeded(jobs[name]) if name in jobs else None

    seen = observe(CountingApi(), jobs["bert-squad"], jobs=lookup)
    assert set(seen.producers) == {"bert-data", "bert-pretrain"}
    assert sorted(asked) == ["ml-training/bert-data", "ml-training/bert-pretrain"]
    asked.clear()
    started = {**jobs["bert-squad"], "status": {"resolved": {"vocab": "s3://v"}, "stages": []}}
    assert observe(CountingApi(), started, jobs=lookup).producers == {} and asked == []


# ------------------------------------------------------------- file-level checks


def test_render_resolves_within_the_file_and_names_a_producer_it_lacks(tmp_path, capsys) -> None:
    assert main(["render", str(END_TO_END)]) == 0
    rendered = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [m["metadata"]["name"] for m in rendered] == ["bert-data-prepare", "bert-data-prepare-seq512",
                                                         "bert-pretrain-phase1", "bert-pretrain-phase2",
                                                         "bert-squad-squad", "bert-mrpc-glue"]
    alone = tmp_path / "squad.yaml"
    alone.write_text(yaml.safe_dump(documents()["bert-squad"]))
    assert main(["validate", str(alone)]) == 0  # the producers may be on the cluster
    capsys.readouterr()
    assert main(["render", str(alone)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{alone}: bert-squad: spec.model.initCheckpointFrom.fromJob: BertTrainingJob bert-pretrain is not in this "
        "file; its outputs are known only once it ran (kubectl apply resolves it on the cluster)",
        f"{alone}: bert-squad: spec.model.vocabFrom.fromJob: BertTrainingJob bert-data is not in this file; its "
        "outputs are known only once it ran (kubectl apply resolves it on the cluster)"]


def test_validate_refuses_a_cycle_in_a_file_with_exit_2_naming_the_field(tmp_path, capsys) -> None:
    jobs = documents()
    jobs["bert-data"]["spec"]["model"] = {"vocabFrom": {"fromJob": "bert-squad"}}
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text(yaml.safe_dump_all(list(jobs.values())))
    assert main(["validate", str(cyclic)]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first == (f"{cyclic}: bert-data: spec.model.vocabFrom.fromJob: jobs bert-data -> bert-squad -> "
                     "bert-pretrain -> bert-data wait for each other's outputs, so none can start; break the cycle")
    assert len(parse_text(cyclic.read_text(), str(cyclic))) == 4  # each job alone is valid: the cycle is the file's


def test_export_formats_must_be_known_and_listed_once() -> None:
    squad = documents()["bert-squad"]
    squad["spec"]["output"]["exportFormats"] = ["hf", "hf"]
    assert errors_of(squad) == ["spec.output.exportFormats: lists a format twice: ['hf', 'hf']"]
    squad["spec"]["output"]["exportFormats"] = ["onnx"]
    [error] = errors_of(squad)
    assert error.startswith("spec.output.exportFormats[0]: must be one of 'hf', 'savedmodel' or 'triton', got 'onnx'")


def test_a_producers_hand_edited_record_is_an_invalid_dependency_not_a_crash() -> None:
    jobs = documents()
    pretrain = succeeded(jobs["bert-pretrain"], resolved={"output": {"uri": 42}})
    producers = {"bert-data": succeeded(jobs["bert-data"]), "bert-pretrain": pretrain}
    result = plan(jobs["bert-squad"], {}, Observed(producers=producers), NOW)
    assert result.actions == () and failed_reason(result)[0] == "DependencyInvalid"
    assert "status.resolved.output: BertTrainingJob bert-pretrain's recorded output is not a location" in \
        failed_reason(result)[1]


def ring(size: int) -> dict[str, dict[str, Any]]:
    """`size` fine-tuning jobs, each starting from the next one's checkpoint, the last from the first's."""
    squad = documents()["bert-squad"]
    out = {}
    for i in range(size):
        body = copy.deepcopy(squad)
        body["metadata"].update(name=f"ft-{i}", uid=f"uid-ft-{i}")
        body["spec"]["model"] = {"preset": "large", "vocab": "s3://bert-models/vocab.txt",
                                 "initCheckpointFrom": {"fromJob": f"ft-{(i + 1) % size}"}}
        out[f"ft-{i}"] = body
    return out


@pytest.mark.parametrize("size", [5, deps.MAX_CHAIN + 1, deps.MAX_CHAIN + 8])
def test_a_cycle_of_any_length_or_a_chain_over_the_limit_fails_the_job_instead_of_waiting_forever(size: int) -> None:
    """40 jobs in a ring each waited for the next forever: the search read 32 and found no way back."""
    jobs = ring(size)
    chain = deps.chain("ft-0", jobs["ft-0"]["spec"], jobs.get)
    result = plan(jobs["ft-0"], {}, Observed(producers=chain), NOW)
    assert result.actions == () and result.status["phase"] == "Failed"
    reason, message = failed_reason(result)
    if size <= deps.MAX_CHAIN + 1:  # (a job reads at most MAX_CHAIN others)
        assert reason == "DependencyCycle" and message.startswith(
            "spec.model.initCheckpointFrom.fromJob: jobs ft-0 -> ft-1 -> ft-2 -> ft-3 -> ft-4 -> ")
        assert message.count("->") == size
    else:
        assert reason == "DependencyInvalid" and message == (
            f"spec.model.initCheckpointFrom.fromJob: BertTrainingJob ft-1 waits, directly or through others, for more "
            f"than {deps.MAX_CHAIN} jobs that have not started (a cycle among them, or a chain too long to follow); a "
            f"job may wait for at most {deps.MAX_CHAIN}")


def test_the_cycle_search_visits_each_job_once() -> None:
    """A lattice of jobs each naming two of the next row: paths double per row, the jobs do not."""
    jobs: dict[str, dict[str, Any]] = {}
    squad = documents()["bert-squad"]
    rows = 15
    for row in range(rows):
        for col in range(2):
            body = copy.deepcopy(squad)
            body["metadata"]["name"] = f"r{row}c{col}"
            if row + 1 < rows:
                body["spec"]["model"] = {"vocabFrom": {"fromJob": f"r{row + 1}c0"},
                                         "initCheckpointFrom": {"fromJob": f"r{row + 1}c1"}}
            else:
                body["spec"]["model"] = {"vocab": "s3://v", "initCheckpoint": "s3://c"}
            jobs[f"r{row}c{col}"] = body
    visited: list[str] = []
    counting = {name: body for name, body in jobs.items()}

    class Watching(dict):  # type: ignore[type-arg]
        def get(self, key: str, default: Any = None) -> Any:
            visited.append(key)
            return super().get(key, default)

    assert deps.find_cycle("r0c0", jobs["r0c0"]["spec"], Watching(counting)) is None
    assert len(visited) <= 4 * len(jobs)
