"""Local mode resolves references between jobs as the operator does (the same reconciler, from the producers'
statuses), so the order of the file does not matter; a failed producer fails its dependents and the other jobs still
run; a cycle or a producer missing from the file is refused before anything runs. Small prepareData jobs (seconds)."""

from __future__ import annotations

from pathlib import Path

from tests.local.helpers import (INPUTS_ANNOTATION, TINY_INPUTS, job_yaml, run_local, statuses, tiny_prepare_spec,
                                 write_jobs)
from tests.operator.fakes import condition


def takes_vocab_from(name: str, producer: str, output: str) -> dict:
    spec = tiny_prepare_spec(output)
    spec["model"] = {"vocabFrom": {"fromJob": producer}}
    return job_yaml(name, spec, INPUTS_ANNOTATION)


def test_a_job_listed_before_its_producer_runs_after_it_with_the_producers_vocab(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "j.yaml", takes_vocab_from("second", "first", "pvc://work/second"),
                      job_yaml("first", tiny_prepare_spec("pvc://work/first"), INPUTS_ANNOTATION))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = statuses(result.stdout)
    assert list(found) == ["first", "second"]  # by their references, not the file's order
    assert found["second"]["resolved"]["vocab"] == "pvc://inputs/vocab.txt"
    assert found["second"]["dependencies"] == [{"name": "first", "fields": ["spec.model.vocabFrom.fromJob"],
                                                "phase": "Succeeded"}]
    log = (tmp_path / "w" / "default" / "second" / "second-prepare.log").read_text()
    assert f"--vocab_file {tmp_path.resolve() / 'tiny' / 'vocab.txt'}" in log  # the producer's vocab, mount path mapped

    # --job runs one job; its producer's earlier run (saved status) gives it its inputs
    again = run_local(str(jobs), "--workdir", str(tmp_path / "w"), "--job", "second", "--fresh", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses(again.stdout)["second"]["resolved"]["vocab"] == "pvc://inputs/vocab.txt"


def test_a_failed_producer_fails_its_dependent_and_the_other_jobs_still_run(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "corpus").mkdir(parents=True)
    (inputs / "corpus" / "book.txt").write_text((TINY_INPUTS / "corpus" / "wiki_00").read_text())
    (inputs / "vocab.txt").write_text("hello\nworld\n")  # not a vocab: the producer fails in its trainer
    broken = job_yaml("broken", tiny_prepare_spec("pvc://work/broken"), {"local.bertoperator.io/pvc.inputs": "inputs"})
    dependent = takes_vocab_from("dependent", "broken", "pvc://work/dependent")
    dependent["metadata"]["annotations"] = broken["metadata"]["annotations"]
    other = job_yaml("other", tiny_prepare_spec("pvc://work/other"), broken["metadata"]["annotations"])
    other["spec"]["model"]["vocab"] = "pvc://tiny/vocab.txt"
    other["metadata"]["annotations"] = {**other["metadata"]["annotations"], "local.bertoperator.io/pvc.tiny": "tiny"}
    other["spec"]["dataset"]["uri"] = "pvc://tiny/corpus"
    jobs = write_jobs(tmp_path / "j.yaml", broken, dependent, other)
    result = run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    found = statuses(result.stdout)
    assert {name: status["phase"] for name, status in found.items()} == {
        "broken": "Failed", "dependent": "Failed", "other": "Succeeded"}
    failed = condition(found["dependent"], "Failed")
    assert failed["reason"] == "DependencyFailed"
    assert failed["message"].startswith("spec.model.vocabFrom.fromJob: BertTrainingJob broken Failed (")
    assert not (tmp_path / "w" / "default" / "dependent" / "dependent-prepare.log").exists()  # never ran
    assert "Traceback" not in result.stderr


def test_a_cycle_or_a_producer_not_in_the_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    cyclic = write_jobs(tmp_path / "cycle.yaml", takes_vocab_from("a", "b", "pvc://work/a"),
                        takes_vocab_from("b", "a", "pvc://work/b"))
    result = run_local(str(cyclic), "--workdir", str(tmp_path / "w"), timeout=60)
    assert result.returncode == 2
    assert "spec.model.vocabFrom.fromJob: jobs a -> b -> a wait for each other's outputs" in result.stderr
    alone = write_jobs(tmp_path / "alone.yaml", takes_vocab_from("a", "elsewhere", "pvc://work/a"))
    result = run_local(str(alone), "--workdir", str(tmp_path / "w"), timeout=60)
    assert result.returncode == 2
    assert "a: spec.model.vocabFrom.fromJob: elsewhere is not a job of this file" in result.stderr
    assert not (tmp_path / "w" / "default").exists()
