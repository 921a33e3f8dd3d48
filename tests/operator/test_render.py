"""Rendering: every example becomes MPIJobs the real MPI Operator schema and Kubernetes accept, with the recipe's details."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from bert_operator.api import SpecError
from bert_operator.api.parse import parse_job, parse_text
from bert_operator.dependencies import resolve_file
from bert_operator.tasks import stages_of
import bert_operator.render as render
from bert_operator.render import RenderSettings, render_all, render_mpijob, render_mpijob_text
from bert_operator.render import _build, _text  # the two routes, compared on values no example has
from bert_operator.render.values import template_values
from tests.conftest import EXAMPLES, rank_command
from tests.schemas import mpijob_errors, pod_errors

GOLDEN = Path(__file__).parent / "golden"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rendered(path: Path, **settings) -> list[dict]:
    """The MPIJobs of every job in the file (the tiny example has three documents), references between them resolved
    as `bertjob render` resolves them."""
    jobs = resolve_file(parse_text(path.read_text(), path.name))
    return [mpijob for job in jobs for mpijob in render_all(job, RenderSettings(**settings))]


def example(name: str) -> Path:
    return next(p for p in EXAMPLES if p.name == name)


def command_flags(mpijob: dict) -> dict[str, str | bool]:
    """The trainer flags of the launcher's command as {flag: value or True}."""
    command = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    trainer = rank_command(command)[4:]
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


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_cached_skeleton_gives_what_parsing_the_rendered_text_gives(path: Path) -> None:
    """Each MPIJob is built from its shape's parsed skeleton; it equals the parse of the fully rendered YAML text,
    key order included, and two renders share no object (a caller may change what it got)."""
    for job in resolve_file(parse_text(path.read_text(), path.name)):
        for stage in stages_of(job.spec):
            built = render_mpijob(job, stage)
            parsed = yaml.safe_load(render_mpijob_text(job, stage))
            assert built == parsed
            assert yaml.safe_dump(built, sort_keys=False) == yaml.safe_dump(parsed, sort_keys=False)
            built["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["metadata"]["labels"]["x"] = "changed"
            built["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"].clear()
            assert render_mpijob(job, stage) == parsed


def test_values_json_and_yaml_read_differently_come_out_as_yaml_reads_them() -> None:
    """YAML 1.1 reads the JSON numbers 1e-05 and NaN as strings, 1.5e+20 as a number: the skeleton's values are read
    as the text's parse reads them, whatever a value holds (the same value placed twice comes out twice, unshared)."""
    [job] = parse_text(example("squad-v1.1.yaml").read_text(), "x")
    values = template_values(job, stages_of(job.spec)[0], RenderSettings())
    values["labels"] = {**values["labels"], "a": 1e-05, "b": 1.5e20, "c": float("nan"), "d": float("-inf"), "e": 2.0,
                        "f": [True, None, 0, -7, "1e-05", "\u00e9 🚀 \U0010fffd"], "g": (1, 2)}
    values["pod_common"] = {**values["pod_common"], "hostNetwork": True}
    built, parsed = _build(values), yaml.safe_load(_text(values))
    assert yaml.safe_dump(built, sort_keys=False) == yaml.safe_dump(parsed, sort_keys=False)
    assert built["metadata"]["labels"]["a"] == "1e-05" and built["metadata"]["labels"]["b"] == 1.5e20
    launcher, worker = (built["spec"]["mpiReplicaSpecs"][kind]["template"]["spec"] for kind in ("Launcher", "Worker"))
    assert launcher["hostNetwork"] is True and launcher["securityContext"] == worker["securityContext"]
    assert launcher["securityContext"] is not worker["securityContext"]


def test_jinja_renders_each_shape_once_and_every_mpijob_still_equals_the_parse_of_its_own_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept skeleton serves every job whose values answer the template's questions alike: the examples' stages,
    and values that flip each of the template's branches (annotations, owner references, the dataset sync, the
    keys of the pod spec), rendered in turn twice over, each equal to the parse of its own fully rendered text;
    Jinja renders the skeleton of each shape once (the second round renders none)."""
    monkeypatch.setattr(render, "_SHAPES", [], raising=False)
    skeletons: list[int] = []
    monkeypatch.setattr(render, "_text", lambda values: skeletons.append(1) or _text(values))
    cases = []
    for path in EXAMPLES:
        for job in resolve_file(parse_text(path.read_text(), path.name)):
            cases += [template_values(job, stage, RenderSettings()) for stage in stages_of(job.spec)]
    base = cases[0]
    cases += [{**base, "pod_annotations": {"a": "b"}}, {**base, "pod_annotations": {}},
              {**base, "owner_references": [{"kind": "BertTrainingJob", "name": "x", "uid": "u"}]},
              {**base, "owner_references": []},
              {**base, "sync": {"command": ["s"], "env": [], "resources": {}, "mounts": []}}, {**base, "sync": None},
              {**base, "pod_common": {**base["pod_common"], "hostNetwork": True}},
              {**base, "pod_common": {"hostNetwork": False, **base["pod_common"]}}]
    for values in cases:
        assert _build(values) == yaml.safe_load(_text(values))
    first_round = len(skeletons)
    assert 1 < first_round < len(cases)  # shapes repeat; branches flipped make new ones
    for values in cases:
        assert _build(values) == yaml.safe_load(_text(values))
    assert len(skeletons) == first_round


def test_bert_large_pretraining_runs_the_recipe_on_32_gpus() -> None:
    phase1, phase2 = rendered(example("bert-large-pretrain.yaml"))
    assert phase1["metadata"]["name"] == "bert-large-lamb-phase1"
    assert phase1["spec"]["slotsPerWorker"] == 8
    assert phase1["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 4
    launcher = phase1["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][:9] == ["python", "-m", "bert_trainer", "launch", "--ssh_port", "2222",
                                       "--timeout_seconds", "86400", "--"]
    assert launcher["command"][9:12] == ["mpirun", "-np", "32"] and "--allow-run-as-root" not in launcher["command"]
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
    assert "--input_format" not in flags  # auto: the trainer detects each file's format


def test_prepare_data_input_format_reaches_the_trainer() -> None:
    document = load(example("prepare-data.yaml"))
    document["spec"]["task"]["prepareData"]["inputFormat"] = "bert"
    [mpijob] = render_all(parse_job(document))
    assert command_flags(mpijob)["--input_format"] == "bert"
    document["spec"]["task"]["prepareData"]["inputFormat"] = "text"
    with pytest.raises(SpecError, match="spec.task.prepareData.inputFormat"):
        parse_job(document)


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
    assert mpijob["spec"]["runPolicy"] == {
        "suspend": True, "backoffLimit": 0, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 60,
        "cleanPodPolicy": "All", "schedulingPolicy": {"minAvailable": 4},
    }
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


def launcher_of(mpijob: dict) -> dict:
    return mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]


def with_spec(name: str, change) -> list[dict]:
    """The MPIJobs of example `name` after `change(spec)`, each checked against both schemas."""
    document = load(example(name))
    change(document["spec"])
    mpijobs = render_all(parse_job(document))
    for mpijob in mpijobs:
        assert mpijob_errors(mpijob) == [] and pod_errors(mpijob) == []
    return mpijobs


def test_kueue_owns_suspend_and_reads_queue_and_priority_from_mpijob_labels() -> None:
    def queued(spec: dict) -> None:
        spec.update(queueName="team-a", workloadPriorityClassName="research-low")
        spec["runPolicy"] = {"suspend": False}

    for mpijob in with_spec("bert-large-pretrain.yaml", queued):
        assert mpijob["spec"]["runPolicy"]["suspend"] is True
        assert mpijob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert mpijob["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "research-low"
        for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
            assert not any(key.startswith("kueue.x-k8s.io/") for key in replica["template"]["metadata"]["labels"])
    [unqueued] = with_spec("squad-v1.1.yaml", lambda spec: None)
    assert unqueued["spec"]["runPolicy"]["suspend"] is False
    assert not any(key.startswith("kueue.x-k8s.io/") for key in unqueued["metadata"]["labels"])


def test_a_failed_launcher_fails_the_stage_at_once_with_its_log_tail() -> None:
    [mpijob] = with_spec("squad-v1.1.yaml", lambda spec: None)
    launcher = launcher_of(mpijob)
    assert launcher["restartPolicy"] == "Never" and mpijob["spec"]["runPolicy"]["backoffLimit"] == 0
    [container] = launcher["template"]["spec"]["containers"]
    assert container["name"] == "launcher" and container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # A user's own backoffLimit stays; maxRestarts is the operator's and never reaches the MPIJob.
    [kept] = with_spec("squad-v1.1.yaml", lambda spec: spec.update(runPolicy={"backoffLimit": 2, "maxRestarts": 5}))
    assert kept["spec"]["runPolicy"]["backoffLimit"] == 2 and "maxRestarts" not in kept["spec"]["runPolicy"]


def crd_scheduling_policy() -> dict:
    from tests.schemas import mpijob_validator

    schema = mpijob_validator().schema
    return schema["properties"]["spec"]["properties"]["runPolicy"]["properties"]["schedulingPolicy"]


def test_scheduling_policy_is_the_mpi_operators_field_for_field() -> None:
    from bert_operator.api.models import SchedulingPolicySpec

    crd = crd_scheduling_policy()["properties"]
    assert {field.alias for field in SchedulingPolicySpec.model_fields.values()} == set(crd)
    policy = {"minAvailable": 2, "queue": "research", "minResources": {"nvidia.com/gpu": 16, "cpu": "64"},
              "priorityClass": "training-high", "scheduleTimeoutSeconds": 600}

    def gang(spec: dict) -> None:
        spec["resources"]["schedulerName"] = "volcano"
        spec["runPolicy"] = {"schedulingPolicy": policy}

    for mpijob in with_spec("bert-large-pretrain.yaml", gang):
        assert mpijob["spec"]["runPolicy"]["schedulingPolicy"] == {**policy, "minResources": {"nvidia.com/gpu": "16", "cpu": "64"}}


@pytest.mark.parametrize("scheduler", ["volcano", "scheduler-plugins-scheduler", None])
def test_the_gang_is_the_workers_unless_set(scheduler: str | None) -> None:
    """The launcher is created once the workers are ready, so a PodGroup counting it (the MPI Operator's own
    default, workers + 1) would never form: every MPIJob says minAvailable = workers."""
    def spec_for(spec: dict) -> None:
        if scheduler:
            spec["resources"]["schedulerName"] = scheduler
    for mpijob in with_spec("bert-large-pretrain.yaml", spec_for):
        assert mpijob["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 4}
        assert mpijob["spec"]["launcherCreationPolicy"] == "WaitForWorkersReady"


def test_pod_template_labels_and_annotations_reach_launcher_and_workers_only() -> None:
    template = {"labels": {"team": "nlp", "cost-center": "cc-1234"},
                "annotations": {"kueue.x-k8s.io/podset-required-topology": "cloud.provider.com/topology-block"}}
    for mpijob in with_spec("bert-large-pretrain.yaml", lambda spec: spec["resources"].update(podTemplate=template)):
        assert "team" not in mpijob["metadata"]["labels"]
        for replica in ("Launcher", "Worker"):
            metadata = mpijob["spec"]["mpiReplicaSpecs"][replica]["template"]["metadata"]
            assert metadata["labels"]["team"] == "nlp" and metadata["labels"]["cost-center"] == "cc-1234"
            assert metadata["labels"]["bertoperator.io/job-name"] == "bert-large-lamb"
            assert metadata["annotations"] == template["annotations"]


def storage(mpijob: dict) -> tuple[dict, str | None, str | None]:
    """(the dataset volume's emptyDir, the sync container's and the worker's ephemeral-storage request)."""
    worker = worker_pod(mpijob)
    volume = next((v["emptyDir"] for v in worker["volumes"] if v["name"] == "dataset"), {})
    init = (worker.get("initContainers") or [{}])[0].get("resources", {}).get("requests", {}).get("ephemeral-storage")
    main = worker["containers"][0]["resources"].get("requests", {}).get("ephemeral-storage")
    return volume, init, main


@pytest.mark.parametrize(("name", "size"), [("bert-large-pretrain.yaml", "400Gi"), ("squad-v1.1.yaml", "2Gi"),
                                            ("prepare-data.yaml", "200Gi"), ("tiny-pretrain-s3.yaml", "400Gi")])
def test_synced_dataset_gets_a_sized_disk_per_task(name: str, size: str) -> None:
    from bert_operator.api.models import ResourcesSpec
    from bert_operator.tasks import task_of

    mpijob = with_spec(name, lambda spec: None)[0]
    assert storage(mpijob) == ({"sizeLimit": size}, size, size)
    # The default is the task's, and the field's description says it (kubectl explain shows it).
    assert task_of(parse_job(load(example(name))).spec).dataset_storage == size
    assert f"{task_of(parse_job(load(example(name))).spec).name} {size}" in ResourcesSpec.model_fields["dataset_storage"].description
    overridden = with_spec(name, lambda spec: spec["resources"].update(datasetStorage="50Gi"))[0]
    assert storage(overridden) == ({"sizeLimit": "50Gi"}, "50Gi", "50Gi")


def test_glue_default_storage_is_documented_and_a_pvc_dataset_needs_no_disk() -> None:
    from bert_operator.api.models import ResourcesSpec
    from bert_operator.tasks import TASKS

    description = ResourcesSpec.model_fields["dataset_storage"].description
    assert all(f"{task.name} {task.dataset_storage}" in description for task in TASKS)
    [mpijob] = with_spec("glue-mrpc.yaml", lambda spec: None)
    assert storage(mpijob) == ({}, None, None)


def test_pods_run_as_the_images_user_with_its_sshd() -> None:
    from bert_operator.render.image import SSH_AUTH_MOUNT_PATH, SSH_PORT, TRAINER_UID, WORKER_COMMAND

    [mpijob] = with_spec("squad-v1.1.yaml", lambda spec: None)
    assert mpijob["spec"]["sshAuthMountPath"] == SSH_AUTH_MOUNT_PATH
    for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
        context = replica["template"]["spec"]["securityContext"]
        assert context["runAsUser"] == context["fsGroup"] == TRAINER_UID and context["runAsNonRoot"] is True
    assert worker_pod(mpijob)["containers"][0]["command"] == WORKER_COMMAND
    command = launcher_of(mpijob)["template"]["spec"]["containers"][0]["command"]
    rsh = command.index("plm_rsh_args")
    assert command[rsh - 1] == "-mca" and command[rsh + 1] == f"-p {SSH_PORT}"


def test_any_text_a_spec_may_carry_renders_as_yaml_characters_beyond_the_bmp_included() -> None:
    """JSON escapes an emoji as a surrogate pair, which YAML parsers refuse: the template's JSON is YAML's."""
    document = load(example("glue-mrpc.yaml"))
    document["spec"]["resources"]["podTemplate"] = {"annotations": {"team": "nlp 🚀 \\ud83d \u00e9 \U0010fffd"}}
    [mpijob] = render_all(parse_job(document))
    pod = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]
    assert pod["metadata"]["annotations"]["team"] == "nlp 🚀 \\ud83d \u00e9 \U0010fffd"
