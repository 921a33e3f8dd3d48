"""Rendering: every example becomes MPIJobs the real MPI Operator schema and Kubernetes accept, with the recipe's details."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from bert_operator.api.parse import parse_job, parse_text
from bert_operator.tasks import stages_of
from bert_operator.render import RenderSettings, render_all, render_mpijob
from tests.conftest import EXAMPLES
from tests.schemas import mpijob_errors, pod_errors

GOLDEN = Path(__file__).parent / "golden"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rendered(path: Path, **settings) -> list[dict]:
    """The MPIJobs of every job in the file (the tiny example has four documents)."""
    return [mpijob for job in parse_text(path.read_text(), path.name) for mpijob in render_all(job, RenderSettings(**settings))]


def example(name: str) -> Path:
    return next(p for p in EXAMPLES if p.name == name)


def command_flags(mpijob: dict) -> dict[str, str | bool]:
    """The trainer flags of the launcher's command as {flag: value or True}."""
    command = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    trainer = command[command.index("bert_trainer") + 2:]
    flags: dict[str, str | bool] = {}
    for i, arg in enumerate(trainer):
        if arg.startswith("--"):
            nxt = trainer[i + 1] if i + 1 < len(trainer) else None
            flags[arg] = nxt if nxt is not None and not nxt.startswith("--") else True
    return flags


def worker_pod(mpijob: dict) -> dict:
    return mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_renders_schema_valid_mpijobs(path: Path) -> None:
    mpijobs = rendered(path)
    assert mpijobs, "a job runs at least one MPIJob"
    for mpijob in mpijobs:
        assert mpijob["apiVersion"] == "kubeflow.org/v2beta1" and mpijob["kind"] == "MPIJob"
        assert mpijob_errors(mpijob) == []
        assert pod_errors(mpijob) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_golden_files(path: Path) -> None:
    """Any change to rendered output shows up as a diff here; UPDATE_GOLDEN=1 rewrites the files."""
    text = yaml.safe_dump_all(rendered(path), sort_keys=False, width=120)
    golden = GOLDEN / path.name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden}; run with UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_bert_large_pretraining_runs_the_recipe_on_32_gpus() -> None:
    phase1, phase2 = rendered(example("bert-large-pretrain.yaml"))
    assert phase1["metadata"]["name"] == "bert-large-lamb-phase1"
    assert phase1["spec"]["slotsPerWorker"] == 8
    assert phase1["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 4
    launcher = phase1["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][:4] == ["mpirun", "--allow-run-as-root", "-np", "32"]
    assert "--bind-to" in launcher["command"] and "socket" in launcher["command"]

    worker = worker_pod(phase1)
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    shm = next(v for v in worker["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in worker["containers"][0]["volumeMounts"]

    flags1, flags2 = command_flags(phase1), command_flags(phase2)
    assert flags1["--max_seq_length"] == "128" and flags1["--max_predictions_per_seq"] == "20"
    assert flags2["--max_seq_length"] == "512" and flags2["--max_predictions_per_seq"] == "80"
    assert int(flags1["--num_train_steps"]) + int(flags2["--num_train_steps"]) == 7820
    assert flags1["--num_train_steps"] == "7038"  # 90% of 7820
    assert flags1["--optimizer"] == "lamb" and flags1["--precision"] == "fp16" and flags1["--use_xla"] is True
    assert flags1["--allreduce_post_accumulation"] is True
    assert flags1["--learning_rate"] == "0.00075" and flags2["--learning_rate"] == "0.0005"
    assert "--init_checkpoint" not in flags1
    assert flags2["--init_checkpoint"] == flags1["--output_dir"] == "s3://bert-results/bert-large-lamb/phase1"


def test_dataset_sync_init_container_and_secrets_by_reference_only() -> None:
    phase1, _ = rendered(example("bert-large-pretrain.yaml"))
    worker = worker_pod(phase1)
    [sync] = worker["initContainers"]
    source = sync["command"][sync["command"].index("--source") + 1]
    dest = sync["command"][sync["command"].index("--dest") + 1]
    assert sync["command"][:4] == ["python", "-m", "bert_trainer", "sync"]
    assert source.startswith("s3://bert-data/tfrecord/lower_case_1_seq_len_128_max_pred_20_")
    assert dest.startswith("/data/") and command_flags(phase1)["--input_files_dir"] == f"{dest}/training"
    env = {e["name"]: e for e in sync["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "bert-s3-credentials", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio.minio.svc:9000"
    # Ranks started over ssh get the launcher's credentials only through mpirun -x.
    launcher = phase1["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert "AWS_SECRET_ACCESS_KEY" in launcher["command"]
    assert all("value" not in e for e in launcher["env"] if e["name"].startswith("AWS_") and "KEY" in e["name"])
    assert phase1["spec"]["launcherCreationPolicy"] == "WaitForWorkersReady"


def test_owner_reference_and_generation_when_the_job_comes_from_the_api() -> None:
    document = load(example("squad-v1.1.yaml"))
    document["metadata"].update(uid="1234-abcd", generation=3, resourceVersion="99")
    [mpijob] = render_all(parse_job(document))
    [owner] = mpijob["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob", "name": "squad-large",
        "uid": "1234-abcd", "controller": True, "blockOwnerDeletion": True,
    }
    assert mpijob["metadata"]["annotations"]["bertoperator.io/job-generation"] == "3"
    assert mpijob_errors(mpijob) == []


def test_squad_v2_fine_tuning_flags() -> None:
    document = load(example("squad-v1.1.yaml"))
    document["spec"]["task"]["squad"]["version"] = "2.0"
    [mpijob] = render_all(parse_job(document))
    flags = command_flags(mpijob)
    assert flags["--version_2_with_negative"] is True
    assert flags["--train_file"] == "/data/train-v2.0.json" and flags["--predict_file"] == "/data/dev-v2.0.json"
    assert flags["--optimizer"] == "adam"  # fine-tuning default
    assert flags["--doc_stride"] == "128" and flags["--max_seq_length"] == "384"
    launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert "--map-by" in launcher["command"] and "none" in launcher["command"]


def test_pvc_dataset_and_output_are_mounted_not_synced() -> None:
    [mpijob] = rendered(example("glue-mrpc.yaml"))
    worker = worker_pod(mpijob)
    assert "initContainers" not in worker
    claims = {v["persistentVolumeClaim"]["claimName"] for v in worker["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"bert-models", "glue-data", "bert-results"}
    mounts = {m["mountPath"]: m for m in worker["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/pvc/bert-results"]["readOnly"] is False
    assert mounts["/mnt/pvc/glue-data"]["readOnly"] is True
    flags = command_flags(mpijob)
    assert flags["--data_dir"] == "/mnt/pvc/glue-data/glue/MRPC"
    assert flags["--output_dir"] == "/mnt/pvc/bert-results/glue-mrpc/glue"
    assert flags["--init_checkpoint"] == "/mnt/pvc/bert-models/uncased_L-24_H-1024_A-16/bert_model.ckpt"


def test_prepare_data_writes_nvidia_named_folder_on_cpu_workers() -> None:
    [mpijob] = rendered(example("prepare-data.yaml"))
    flags = command_flags(mpijob)
    assert flags["--output_dir"] == (
        "s3://bert-data/tfrecord/lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_seed_12345"
        "_dupe_factor_5_shard_1472_test_split_10/books_wiki_en_corpus"
    )
    assert mpijob["spec"]["slotsPerWorker"] == 1
    assert "nvidia.com/gpu" not in worker_pod(mpijob)["containers"][0]["resources"].get("limits", {})


def test_default_pretrain_phase_reads_what_default_prepare_data_writes() -> None:
    prepare = load(example("prepare-data.yaml"))
    [prep_job] = render_all(parse_job(prepare))
    written = command_flags(prep_job)["--output_dir"]
    pretrain = load(example("bert-large-pretrain.yaml"))
    pretrain["spec"]["dataset"]["uri"] = prepare["spec"]["output"]["uri"]
    phase1 = render_all(parse_job(pretrain))[0]
    sync = worker_pod(phase1)["initContainers"][0]["command"]
    assert sync[sync.index("--source") + 1] == written


def test_custom_model_config_travels_inline_and_cpu_jobs_map_by_slot() -> None:
    phase1, phase2 = rendered(example("tiny-pretrain-s3.yaml"))
    flags = command_flags(phase1)
    assert '"num_hidden_layers":2' in flags["--bert_config_json"]
    assert "--use_xla" not in flags and flags["--precision"] == "fp32"
    assert "--allreduce_post_accumulation" not in flags  # accumulation 1
    assert command_flags(phase2)["--allreduce_post_accumulation"] is True


def test_run_policy_queue_and_scheduling_pass_through() -> None:
    document = load(example("bert-large-pretrain.yaml"))
    document["spec"]["runPolicy"] = {"suspend": True, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 60, "cleanPodPolicy": "All"}
    document["spec"]["resources"]["schedulerName"] = "volcano"
    document["spec"]["resources"]["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}
    }
    document["spec"]["imagePullSecrets"] = ["registry-creds"]
    document["spec"]["image"] = "registry.example/bert:1"
    mpijob = render_all(parse_job(document))[0]
    assert mpijob["spec"]["runPolicy"] == {"suspend": True, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 60, "cleanPodPolicy": "All"}
    assert mpijob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    worker = worker_pod(mpijob)
    assert worker["schedulerName"] == "volcano" and worker["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert worker["containers"][0]["image"] == "registry.example/bert:1"
    assert mpijob_errors(mpijob) == [] and pod_errors(mpijob) == []


def test_default_image_comes_from_settings() -> None:
    [mpijob] = rendered(example("squad-v1.1.yaml"), default_image="my.registry/trainer:7")
    assert worker_pod(mpijob)["containers"][0]["image"] == "my.registry/trainer:7"


def test_rendering_is_pure_and_deterministic() -> None:
    [job] = parse_text(example("bert-large-pretrain.yaml").read_text(), "x")
    stage = stages_of(job.spec)[1]
    first = render_mpijob(job, stage)
    again = render_mpijob(job, stage)
    assert first == again and first is not again
    mutated = copy.deepcopy(first)
    mutated["spec"]["slotsPerWorker"] = 1
    assert render_mpijob(job, stage)["spec"]["slotsPerWorker"] == 8


def test_the_schema_checks_are_not_vacuous() -> None:
    """The validators used above do reject what the API server would reject."""
    [mpijob] = rendered(example("squad-v1.1.yaml"))
    broken = copy.deepcopy(mpijob)
    broken["spec"]["slotsPerWorker"] = "eight"
    broken["spec"]["runPolicy"]["cleanPodPolicy"] = 7
    assert len(mpijob_errors(broken)) == 2
    bad_pod = copy.deepcopy(mpijob)
    worker = bad_pod["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    worker["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": {"count": 4}}
    worker["volumes"][0]["emptyDir"]["medium"] = ["Memory"]
    assert pod_errors(bad_pod)
