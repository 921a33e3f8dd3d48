"""Bad input to `bertjob run --local`: a clear message naming the field or flag, the right exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bert_operator.local import commands
from bert_operator.local.commands import container_env, launcher_command, s3_endpoint
from bert_operator.local.runner import resumable
from bert_operator.api.models import BertTrainingJob
from bert_operator.api.parse import parse_job
from bert_operator.local.volumes import LocalSetupError, check_inputs, to_local, volume_map
from tests.local.helpers import (INPUTS_ANNOTATION, TINY_INPUTS, job_yaml, run_local, saved_statuses, statuses,
                                summary_rows, tiny_prepare_spec, write_jobs)
from tests.operator.fakes import condition


def assert_clean_failure(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_missing_file_and_bad_flags(tmp_path: Path) -> None:
    assert_clean_failure(run_local(str(tmp_path / "nope.yaml"), timeout=60), 2, "nope.yaml: no such file")
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION))
    assert_clean_failure(run_local(str(jobs), "--volume", "inputs", timeout=60), 2, "--volume: expected CLAIM=DIR")
    assert_clean_failure(run_local(str(jobs), "--job", "other", "--workdir", str(tmp_path / "w"), timeout=60), 2,
                         "--job: no job named other in the file (it has records)")
    assert_clean_failure(run_local(str(jobs), "--processes", "0", timeout=60), 2, "--processes: must be at least 1")
    (tmp_path / "a-file").write_text("")
    assert_clean_failure(run_local(str(jobs), "--workdir", str(tmp_path / "a-file" / "runs"), timeout=60), 2,
                         f"--workdir: cannot create {tmp_path / 'a-file' / 'runs' / 'default' / 'records'}")


def test_invalid_spec_is_refused_with_its_field_path(tmp_path: Path) -> None:
    spec = tiny_prepare_spec()
    spec["task"]["prepareData"]["maxSeqLength"] = 4
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", spec, INPUTS_ANNOTATION))
    assert_clean_failure(run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60), 2,
                         "spec.task.prepareData.maxSeqLength")
    assert not (tmp_path / "w").exists()


def test_missing_vocab_names_the_field_the_uri_and_the_local_path(tmp_path: Path) -> None:
    spec = tiny_prepare_spec()
    spec["model"]["vocab"] = "pvc://inputs/no-such-vocab.txt"
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", spec, INPUTS_ANNOTATION))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60)
    assert_clean_failure(result, 2, "spec.model.vocab: pvc://inputs/no-such-vocab.txt is "
                         f"{tmp_path.resolve() / 'tiny' / 'no-such-vocab.txt'} locally (metadata.annotations[local.bertoperator.io/pvc.inputs])")
    assert not (tmp_path / "w").exists()  # nothing started, nothing half-created


def test_unmapped_claim_says_how_to_map_it(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", tiny_prepare_spec()))  # no annotation for claim inputs
    assert_clean_failure(run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60), 2,
                         "spec.dataset.uri: pvc://inputs/corpus is", "set it with --volume inputs=DIR")
    ok = run_local(str(jobs), "--workdir", str(tmp_path / "w"), "--volume", f"inputs={TINY_INPUTS}")
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_a_file_that_is_not_a_vocab_fails_the_stage_with_the_trainers_message(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "corpus").mkdir(parents=True)
    (inputs / "corpus" / "book.txt").write_text((TINY_INPUTS / "corpus" / "wiki_00").read_text())
    (inputs / "vocab.txt").write_text("hello\nworld\n")
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", tiny_prepare_spec(), {"local.bertoperator.io/pvc.inputs": "inputs"}))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=120)
    assert result.returncode == 1, result.stderr
    status = statuses(result.stdout)["records"]
    failed = condition(status, "Failed")
    assert status["phase"] == "Failed" and failed["status"] == "True"
    assert "--vocab_file" in failed["message"] and "records-prepare.log" in failed["message"]
    assert "Warning Failed" in result.stderr and "Traceback" not in result.stderr


def test_a_changed_spec_is_refused_until_fresh(tmp_path: Path) -> None:
    jobs = tmp_path / "j.yaml"
    write_jobs(jobs, job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION))
    assert run_local(str(jobs), "--workdir", str(tmp_path / "w")).returncode == 0
    write_jobs(jobs, job_yaml("records", tiny_prepare_spec(dupeFactor=2), INPUTS_ANNOTATION))
    assert_clean_failure(run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60), 2,
                         "records: the spec changed since the run saved in", "Run with --fresh")
    fresh = run_local(str(jobs), "--workdir", str(tmp_path / "w"), "--fresh")
    assert fresh.returncode == 0 and statuses(fresh.stdout)["records"]["phase"] == "Succeeded"


def test_an_unreadable_saved_status_says_how_to_start_over(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", tiny_prepare_spec(), INPUTS_ANNOTATION))
    saved = tmp_path / "w" / "default" / "records" / "status.json"
    saved.parent.mkdir(parents=True)
    saved.write_text("{not json")
    assert_clean_failure(run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60), 2,
                         f"{saved}: unreadable saved status", "run with --fresh to start over")
    assert saved.read_text() == "{not json"  # left as found
    assert not (saved.parent / "records-prepare.log").exists()  # nothing started


def test_a_suspended_job_runs_nothing_and_says_so(tmp_path: Path) -> None:
    spec = {**tiny_prepare_spec(), "runPolicy": {"suspend": True}}
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", spec, INPUTS_ANNOTATION))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60, output=None)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "runPolicy.suspend is true; nothing runs" in result.stderr
    # The run ends with its table (the whole status is in status.json, and behind -o yaml).
    row = summary_rows(result.stdout)["records"]
    assert (row["PHASE"], row["DURATION"], row["METRIC"], row["OUTPUTS"]) == (
        "Suspended", "", "", str(tmp_path / "w" / "volumes" / "work" / "records"))
    assert saved_statuses(tmp_path / "w", "records")["records"]["phase"] == "Suspended"
    assert not (tmp_path / "w" / "default" / "records" / "records-prepare.log").exists()


def test_a_job_file_cannot_name_a_folder_outside_its_own(tmp_path: Path) -> None:
    """A job file from someone else: `pvc.corpus: ~/.ssh` plus an output endpoint of its author's choosing would ship
    a private key out with the user's keys. Refused before anything runs; --volume, the user's own word, still works."""
    spec = tiny_prepare_spec()
    spec["output"] = {"uri": "s3://collector/loot", "endpoint": "http://203.0.113.9:9000"}
    jobs = write_jobs(tmp_path / "j.yaml", job_yaml("records", spec, {"local.bertoperator.io/pvc.inputs": "~/.ssh"}))
    assert_clean_failure(run_local(str(jobs), "--workdir", str(tmp_path / "w"), timeout=60), 2,
                         "metadata.annotations[local.bertoperator.io/pvc.inputs]: '~/.ssh' is not relative",
                         "a folder inside the job file's folder", "--volume inputs=DIR")
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------- the pieces, directly


def annotated_job(value: str) -> BertTrainingJob:
    return parse_job(job_yaml("records", tiny_prepare_spec(), {"local.bertoperator.io/pvc.inputs": value}))


@pytest.mark.parametrize(("value", "says"), [
    ("~/.ssh", "is not relative"), ("/etc", "is not relative"), ("../outside", "names a parent or hidden folder"),
    ("tiny/../../outside", "names a parent or hidden folder"), (".ssh", "names a parent or hidden folder"),
    ("link/inside", "outside"), ("", "is not relative"),
])
def test_an_annotation_may_only_name_a_folder_inside_the_files_folder(tmp_path: Path, value: str, says: str) -> None:
    here = tmp_path / "jobs"
    (here / "tiny").mkdir(parents=True)
    (here / "link").symlink_to(tmp_path)  # a symlink out of the folder, as a checked-out repository may hold
    with pytest.raises(LocalSetupError, match=r"metadata\.annotations\[local\.bertoperator\.io/pvc\.inputs\]: .*" + says):
        volume_map(annotated_job(value), here, {}, tmp_path / "w", tmp_path / "w" / "j")
    # the flag wins and the annotation is not looked at; from standard input no annotated folder is taken
    assert volume_map(annotated_job(value), here, {"inputs": tmp_path}, tmp_path / "w", tmp_path / "w" / "j"
                      ).claim_dir("inputs") == tmp_path.resolve()
    with pytest.raises(LocalSetupError, match="standard input has no folder"):
        volume_map(annotated_job("tiny"), None, {}, tmp_path / "w", tmp_path / "w" / "j")
    assert volume_map(annotated_job("./tiny"), here, {}, tmp_path / "w", tmp_path / "w" / "j"
                      ).claim_dir("inputs") == (here / "tiny").resolve()


def test_a_symlink_below_an_annotated_folder_does_not_lead_out_of_it(tmp_path: Path) -> None:
    """The annotation names `tiny`, inside the file's folder; `tiny/vocab.txt` is a symlink to a file outside it."""
    here, secret = tmp_path / "jobs", tmp_path / "private.key"
    (here / "tiny").mkdir(parents=True)
    secret.write_text("not a vocab")
    (here / "tiny" / "corpus").mkdir()
    (here / "tiny" / "vocab.txt").symlink_to(secret)
    job = annotated_job("tiny")
    volumes = volume_map(job, here, {}, tmp_path / "w", tmp_path / "w" / "j")
    with pytest.raises(LocalSetupError, match=r"spec\.model\.vocab: pvc://inputs/vocab\.txt leads to .*private\.key, outside"):
        check_inputs(job, volumes)
    # given on the command line, the same folder is the user's choice
    check_inputs(job, volume_map(job, here, {"inputs": here / "tiny"}, tmp_path / "w", tmp_path / "w" / "j"))


def test_mount_paths_map_to_folders_on_path_boundaries() -> None:
    mounts = [("/mnt/pvc/data-big", Path("/b")), ("/mnt/pvc/data", Path("/a")), ("/data", Path("/synced"))]
    assert to_local("/mnt/pvc/data/x/y", mounts) == "/a/x/y"
    assert to_local("/mnt/pvc/data-big/z", mounts) == "/b/z"
    assert to_local("/mnt/pvc/data", mounts) == "/a"
    assert to_local("/database", mounts) == "/database"  # a prefix of a name is not a path prefix
    assert to_local("s3://bucket/data", mounts) == "s3://bucket/data"


def test_secret_keys_come_from_the_environment_and_local_endpoints_win() -> None:
    container = {"env": [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "AWS_ACCESS_KEY_ID"}}},
        {"name": "AWS_ENDPOINT_URL_S3", "value": "http://minio.minio.svc:9000"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]}
    env = container_env(container, {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    assert env["AWS_ACCESS_KEY_ID"] == "k" and "AWS_ENDPOINT_URL_S3" not in env and env["PYTHONUNBUFFERED"] == "1"
    assert container_env(container, {"AWS_ACCESS_KEY_ID": "k"})["AWS_ENDPOINT_URL_S3"] == "http://minio.minio.svc:9000"
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID: on a cluster it comes from Secret 'keys'"):
        container_env(container, {})
    # The runner reads reports with the same rule, without touching the environment its stages inherit.
    assert s3_endpoint("http://minio.minio.svc:9000", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}) == "http://127.0.0.1:9000"
    assert s3_endpoint("http://minio.minio.svc:9000", {}) == "http://minio.minio.svc:9000"


def test_several_processes_need_mpirun_and_say_so() -> None:
    mpijob = {"spec": {"mpiReplicaSpecs": {"Launcher": {"template": {"spec": {"containers": [{
        "command": ["mpirun", "-np", "8", "python", "-m", "bert_trainer", "glue", "--horovod"],
    }]}}}}}}
    with pytest.raises(ValueError, match="8 processes need mpirun"):
        launcher_command(mpijob, [], environ={"PATH": "/nonexistent"})
    one = launcher_command(mpijob, [], processes=1, environ={"PATH": "/nonexistent"})
    assert one.argv[1:4] == ["-m", "bert_trainer", "glue"]


@pytest.mark.parametrize(("euid", "allowed"), [(0, True), (1000, False)])
def test_open_mpi_may_run_as_root_only_in_a_local_run_as_root(tmp_path, monkeypatch, euid: int, allowed: bool) -> None:
    """The pods run as a user (no --allow-run-as-root); a local run as root (CI) needs Open MPI's consent."""
    fake = tmp_path / "mpirun"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(commands.os, "geteuid", lambda: euid)
    monkeypatch.setattr(commands, "horovod_installed", lambda: True)
    mpijob = {"spec": {"mpiReplicaSpecs": {"Launcher": {"template": {"spec": {"containers": [{
        "command": ["mpirun", "-np", "8", "python", "-m", "bert_trainer", "glue", "--horovod"],
    }]}}}}}}
    command = commands.launcher_command(mpijob, [], processes=2, environ={"PATH": str(tmp_path)})
    assert command.argv[:4] == ["mpirun", "--oversubscribe", "-np", "2"]
    granted = {key: command.env.get(key) for key in commands.ROOT_ALLOWED_ENV}
    assert granted == ({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if allowed
                       else {"OMPI_ALLOW_RUN_AS_ROOT": None, "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": None})
    assert any("root" in note for note in command.notes) is allowed


def test_a_rerun_keeps_only_succeeded_stages() -> None:
    saved = {"phase": "Failed", "currentStage": "phase2", "completionTime": "t", "acceptedSpec": {"a": 1},
             "stages": [{"name": "phase1", "phase": "Succeeded"}, {"name": "phase2", "phase": "Failed"}]}
    assert resumable(saved) == {"acceptedSpec": {"a": 1}, "stages": [{"name": "phase1", "phase": "Succeeded"}]}
    done = {"phase": "Succeeded", "stages": []}
    assert resumable(done) is done
