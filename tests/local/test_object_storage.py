"""A local run against object storage: a moto S3 server on loopback stands for MinIO.

The job names the in-cluster endpoint (which does not resolve here); the environment's
AWS_ENDPOINT_URL_S3 wins, and the keys a pod would get from the Secret come from the environment.
"""

from __future__ import annotations

from pathlib import Path

import boto3

from tests.local.helpers import TINY_INPUTS, job_yaml, run_local, statuses, tiny_prepare_spec, write_jobs
from tests.operator.fakes import condition

IN_CLUSTER_ENDPOINT = "http://minio.minio.svc:9000"


def s3_job(bucket: str) -> dict:
    spec = tiny_prepare_spec(output=f"s3://{bucket}/records")
    spec["model"]["vocab"] = f"s3://{bucket}/vocab.txt"
    spec["dataset"] = {"uri": f"s3://{bucket}/corpus", "endpoint": IN_CLUSTER_ENDPOINT, "credentialsSecret": "s3-keys"}
    spec["output"].update(endpoint=IN_CLUSTER_ENDPOINT, credentialsSecret="s3-keys")
    return job_yaml("s3-records", spec)


def upload_inputs(bucket: str, endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    client.upload_file(str(TINY_INPUTS / "vocab.txt"), bucket, "vocab.txt")
    for path in sorted((TINY_INPUTS / "corpus").iterdir()):
        client.upload_file(str(path), bucket, f"corpus/{path.name}")


def test_prepare_data_from_and_to_object_storage(tmp_path: Path, bucket: str, s3_env: dict[str, str]) -> None:
    upload_inputs(bucket, s3_env["AWS_ENDPOINT_URL_S3"])
    jobs = write_jobs(tmp_path / "s3.yaml", s3_job(bucket))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "runs"), env=s3_env)
    assert result.returncode == 0, result.stderr[-3000:]
    status = statuses(result.stdout)["s3-records"]
    assert status["phase"] == "Succeeded" and status["results"]["instances"] > 500
    assert condition(status, "ProgressAvailable")["message"] == "trainer reported on prepare"  # read back from the bucket

    log = (tmp_path / "runs" / "default" / "s3-records" / "s3-records-prepare.log").read_text()
    assert "init:sync-dataset" in log and '"event": "sync_done"' in log  # the init container's sync ran first
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
            .list_objects_v2(Bucket=bucket, Prefix="records/")["Contents"]]
    folder = "records/lower_case_1_seq_len_64_max_pred_10_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5_shard_4_test_split_25/books_wiki_en_corpus"
    assert any(k.startswith(f"{folder}/training/") for k in keys) and any(k.startswith(f"{folder}/test/") for k in keys)
    assert f"{folder}/results.json" in keys and f"{folder}/progress.json" in keys


def test_missing_keys_are_named_before_anything_runs(tmp_path: Path, bucket: str, s3_env: dict[str, str]) -> None:
    jobs = write_jobs(tmp_path / "s3.yaml", s3_job(bucket))
    env = {**s3_env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    result = run_local(str(jobs), "--workdir", str(tmp_path / "runs"), env=env, timeout=60)
    assert result.returncode == 2
    assert "spec.dataset.credentialsSecret" in result.stderr and "'s3-keys'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_dataset_key_that_leaves_the_data_folder_fails_the_job_and_writes_nothing_outside(
        tmp_path: Path, bucket: str, s3_env: dict[str, str]) -> None:
    """Issue 13 D1: `corpus//<abs path>` used to be synced to that absolute path, and the job Succeeded."""
    upload_inputs(bucket, s3_env["AWS_ENDPOINT_URL_S3"])
    outside = tmp_path / "outside"
    key = f"corpus/{outside}/planted.txt"  # corpus//tmp/...: the relpath is absolute
    boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"]).put_object(Bucket=bucket, Key=key, Body=b"x")
    jobs = write_jobs(tmp_path / "s3.yaml", s3_job(bucket))
    result = run_local(str(jobs), "--workdir", str(tmp_path / "runs"), env=s3_env)
    assert not outside.exists(), "the sync wrote outside the job's data folder"
    assert result.returncode == 1, result.stderr[-3000:]
    status = statuses(result.stdout)["s3-records"]
    failed = condition(status, "Failed")
    assert status["phase"] == "Failed" and key in failed["message"] and "does not stay inside" in failed["message"]
