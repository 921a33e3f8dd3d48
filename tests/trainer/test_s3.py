"""Object storage through a real S3 API (moto server on 127.0.0.1) and real boto3:
dataset staging (sync), checkpoints, progress and resume under s3:// output."""

from __future__ import annotations

import json

import boto3
import pytest

from bert_trainer import storage
from conftest import tiny_flags


def client(env):
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])


def upload_dir(env, local_dir, bucket, prefix):
    from pathlib import Path

    for path in sorted(Path(local_dir).iterdir()):
        client(env).upload_file(str(path), bucket, f"{prefix}/{path.name}")


def keys(env, bucket, prefix=""):
    resp = client(env).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_sync_copies_then_skips_same_size_files(run_cli, s3_env, bucket, records, tmp_path):
    upload_dir(s3_env, records["train"], bucket, "data/training")
    dest = tmp_path / "staged"
    first = run_cli(["sync", "--source", f"s3://{bucket}/data/training", "--dest", str(dest)], env=s3_env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["copied"] == 2 and summary["skipped"] == 0
    assert "sync: 2/2 files" in first.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["part-00000.tfrecord", "part-00001.tfrecord"]
    again = run_cli(["sync", "--source", f"s3://{bucket}/data/training", "--dest", str(dest)], env=s3_env)
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 2


@pytest.mark.parametrize("source,expect", [("s3://no-such-bucket-xyz/data", "not reachable"),
                                           ("s3://{bucket}/missing/prefix", "no objects")])
def test_sync_unreachable_bucket_or_missing_prefix_exits_2(run_cli, s3_env, bucket, tmp_path, source, expect):
    proc = run_cli(["sync", "--source", source.format(bucket=bucket), "--dest", str(tmp_path / "d")], env=s3_env)
    assert proc.returncode == 2
    assert "--source" in proc.stderr and expect in proc.stderr and "Traceback" not in proc.stderr


def test_pretrain_with_s3_input_and_output_checkpoints_progress_and_resume(run_cli, run_cli_until_killed, s3_env,
                                                                           bucket, records, tmp_path):
    upload_dir(s3_env, records["train"], bucket, "data/training")
    upload_dir(s3_env, records["eval"], bucket, "data/test")
    flags = tiny_flags({"train": f"s3://{bucket}/data/training", "eval": f"s3://{bucket}/data/test"},
                       f"s3://{bucket}/runs/job1", steps=10, save=5)
    flags += ["--local_dir", str(tmp_path / "scratch")]
    # SIGKILL once ckpt-5 is uploaded, before the run can end (and write ckpt-10).
    killed = run_cli_until_killed(flags, "event=checkpoint_saved step=5 ", env=s3_env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    written = keys(s3_env, bucket, "runs/job1/")
    assert "runs/job1/checkpoints/ckpt-5.index" in written
    assert "runs/job1/checkpoints/ckpt-10.index" not in written and "runs/job1/results.json" not in written
    progress = json.loads(storage.read_bytes(f"s3://{bucket}/runs/job1/progress.json"))
    assert progress["step"] == 5 and progress["totalSteps"] == 10

    # A fresh pod: new local scratch, everything must come back from the bucket.
    flags[flags.index("--local_dir") + 1] = str(tmp_path / "scratch2")
    resumed = run_cli(flags + ["--do_eval"], env=s3_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "event=resumed step=5" in resumed.stderr
    all_keys = keys(s3_env, bucket, "runs/job1/")
    for key in ("checkpoints/ckpt-10.index", "checkpoints/ckpt-10.data-00000-of-00001", "progress.json",
                "results.json", "loss_curve.png", "bert_config.json"):
        assert f"runs/job1/{key}" in all_keys
    assert any(k.startswith("runs/job1/tensorboard/events.out.tfevents") for k in all_keys)
    results = json.loads(storage.read_bytes(f"s3://{bucket}/runs/job1/results.json"))
    assert results["checkpoint"] == f"s3://{bucket}/runs/job1/checkpoints/ckpt-10"
    assert results["steps"] == 10 and results["resumedFromStep"] == 5 and "evalLoss" in results

    # Phase 2 style: init from the s3 run directory (weights only).
    flags2 = tiny_flags({"train": f"s3://{bucket}/data/training", "eval": ""}, f"s3://{bucket}/runs/job2",
                        steps=2, save=2) + ["--init_checkpoint", f"s3://{bucket}/runs/job1",
                                            "--local_dir", str(tmp_path / "scratch3")]
    phase2 = run_cli(flags2, env=s3_env)
    assert phase2.returncode == 0, phase2.stderr[-3000:]
    assert "kind=bert-operator" in phase2.stderr and "ckpt-10" in phase2.stderr


def test_pretrain_unreachable_output_bucket_exits_2(run_cli, s3_env, records, tmp_path):
    proc = run_cli(tiny_flags(records, "s3://no-such-bucket-abc/run", steps=2), env=s3_env)
    assert proc.returncode == 2 and "--output_dir" in proc.stderr and "Traceback" not in proc.stderr


def test_read_if_exists_reads_once_and_tells_missing_from_broken(bucket, s3_env, tmp_path) -> None:
    uri = f"s3://{bucket}/reports/progress.json"
    assert storage.read_if_exists(uri) is None
    storage.write_bytes(uri, b'{"step": 3}')
    assert storage.read_if_exists(uri) == b'{"step": 3}'
    # An explicit endpoint wins over the environment's (the local runner reads where the spec says).
    assert storage.read_if_exists(uri, endpoint=s3_env["AWS_ENDPOINT_URL_S3"]) == b'{"step": 3}'
    with pytest.raises(storage.StorageError, match="cannot read"):
        storage.read_if_exists(f"s3://no-such-bucket-{bucket}/x.json")
    assert storage.read_if_exists(str(tmp_path / "absent.json")) is None
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(storage.StorageError, match="cannot read"):
        storage.read_if_exists(str(tmp_path / "dir.json"))
