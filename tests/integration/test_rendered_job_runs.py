"""The contract between operator and trainer: the commands an MPIJob runs, run as rendered.

Renders the tiny two-phase example, stages its dataset from a moto S3 server
with the init container's own command, then runs each phase's trainer command
exactly as the launcher would start rank 0 (only the pod's /data mount is
mapped to a temporary folder). Phase 2 must start from phase 1's checkpoint in
the bucket, and both phases must leave progress and results there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bert_operator.api.parse import parse_job
from bert_operator.render import render_all
from tests.conftest import REPO, rank_command

pytest.importorskip("tensorflow")


def tiny_document() -> dict:
    document = yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text())
    pretrain = document["spec"]["task"]["pretrain"]
    pretrain.update(trainSteps=20, saveCheckpointsSteps=5)
    pretrain["phases"][0].update(warmupSteps=2)
    pretrain["phases"][1].update(warmupSteps=1)
    return document


def pod_path(arg: str, data_root: Path) -> str:
    """The pod's /data (the synced dataset) is a temporary folder here."""
    return str(data_root) + arg[len("/data"):] if arg == "/data" or arg.startswith("/data/") else arg


def run(command: list[str], env: dict[str, str], cwd: Path, data_root: Path) -> subprocess.CompletedProcess:
    assert command[:3] == ["python", "-m", "bert_trainer"], command
    args = [pod_path(a, data_root) for a in command[3:]]
    return subprocess.run([sys.executable, "-m", "bert_trainer", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_rendered_sync_and_two_phase_pretraining_run_against_object_storage(tmp_path: Path, s3_server: dict) -> None:
    import boto3
    from bert_trainer.data.synthetic import write_synthetic_records

    env = {**os.environ, **s3_server, "TF_CPP_MIN_LOG_LEVEL": "2"}
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="bert-demo")
    # The dataset as prepareData would leave it: training/ and test/ per phase.
    for phase, (seq, pred) in (("seq64", (64, 10)), ("seq128", (128, 20))):
        for split, seed in (("training", 1), ("test", 2)):
            local = tmp_path / "upload" / phase / split
            write_synthetic_records(str(local), num_files=1, examples_per_file=64, vocab_size=512,
                                    max_seq_length=seq, max_predictions_per_seq=pred, seed=seed)
            for file in local.iterdir():
                s3.upload_file(str(file), "bert-demo", f"data/tiny/{phase}/{split}/{file.name}")

    phase1, phase2 = render_all(parse_job(tiny_document()))
    data_root = tmp_path / "pod-data"
    logs = []
    for mpijob in (phase1, phase2):
        worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
        sync = run(worker["initContainers"][0]["command"], env, tmp_path, data_root)
        assert sync.returncode == 0, sync.stderr[-2000:]
        launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
        trainer = rank_command(launcher)
        result = run(trainer, env, tmp_path, data_root)
        assert result.returncode == 0, result.stderr[-3000:]
        logs.append(result.stdout + result.stderr)
    # Phase 2 started from phase 1's weights in the bucket, all of them (heads included).
    assert "event=init_checkpoint_summary" not in logs[0]
    summary = next(line for line in logs[1].splitlines() if "event=init_checkpoint_summary" in line)
    assert "missing=[]" in summary and "unused=[]" in summary, summary

    def read(key: str) -> dict:
        return json.loads(s3.get_object(Bucket="bert-demo", Key=key)["Body"].read())

    prefix = "results/bert-tiny"
    progress1, progress2 = read(f"{prefix}/phase1/progress.json"), read(f"{prefix}/phase2/progress.json")
    assert (progress1["step"], progress1["totalSteps"]) == (18, 18)
    assert (progress2["step"], progress2["totalSteps"]) == (2, 2)
    results2 = read(f"{prefix}/phase2/results.json")
    assert results2["checkpoint"].startswith(f"s3://bert-demo/{prefix}/phase2/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bert-demo", Prefix=f"{prefix}/phase1/")["Contents"]]
    assert any("ckpt" in key for key in keys), keys


@pytest.mark.parametrize("example", ["bert-large-pretrain.yaml", "prepare-data.yaml", "glue-mrpc.yaml", "squad-v1.1.yaml"])
def test_every_rendered_trainer_command_parses_with_the_trainers_own_cli(example: str) -> None:
    """Flag names are a contract: each rendered command is accepted by the trainer's argument parser."""
    from bert_trainer.cli import build_parser

    document = yaml.safe_load((REPO / "examples" / example).read_text())
    for mpijob in render_all(parse_job(document)):
        launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
        args = build_parser().parse_args(rank_command(launcher)[3:])
        assert args.task in ("pretrain", "prepare-data", "glue", "squad") and args.horovod is True
        wait = build_parser().parse_args(launcher[3:])  # the launcher's own `launch ... -- mpirun ...`
        assert wait.task == "launch" and wait.ssh_port == 2222 and "mpirun" in wait.command
        worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
        for init in worker.get("initContainers", []):
            assert build_parser().parse_args(init["command"][3:]).task == "sync"
