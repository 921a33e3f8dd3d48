"""`remove-checkpoints`, the sweep cleanup Job's command: only the named trials' checkpoints/ go, through real boto3
against the moto server and on a local folder; results and exports stay; a second run finds nothing and succeeds;
a folder that is not a trial's is refused before anything is deleted."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

TRIAL_FILES = ("checkpoints/ckpt-10.index", "checkpoints/ckpt-10.data-00000-of-00001", "checkpoints/nested/x",
               "results.json", "progress.json", "export/hf/config.json")


def keys(env: dict[str, str], bucket: str) -> list[str]:
    answer = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"]).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in answer.get("Contents", []))


def test_removes_only_the_named_trials_checkpoints_on_s3(run_cli, s3_env, bucket) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
    for trial in ("t0", "t1", "t2"):
        for name in TRIAL_FILES:
            s3.put_object(Bucket=bucket, Key=f"runs/job/glue/{trial}/{name}", Body=b"x" * 10)
    s3.put_object(Bucket=bucket, Key="runs/job/glue/t0-other/checkpoints/keep", Body=b"y")
    args = ["remove-checkpoints", "--trial_output", f"s3://{bucket}/runs/job/glue/t0",
            "--trial_output", f"s3://{bucket}/runs/job/glue/t2/"]
    done = run_cli(args, env=s3_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"event": "checkpoints_removed", "trials": {
        f"s3://{bucket}/runs/job/glue/t0": {"files": 3, "bytes": 30},
        f"s3://{bucket}/runs/job/glue/t2/": {"files": 3, "bytes": 30}}}
    assert "remove-checkpoints: 2/2" in done.stderr
    left = keys(s3_env, bucket)
    assert [k for k in left if "/checkpoints/" in k] == sorted([
        "runs/job/glue/t0-other/checkpoints/keep",
        *(f"runs/job/glue/t1/{name}" for name in TRIAL_FILES if name.startswith("checkpoints/"))])
    for trial in ("t0", "t2"):  # what the status and the artifacts point at stays
        assert {f"runs/job/glue/{trial}/{n}" for n in ("results.json", "progress.json", "export/hf/config.json")} <= set(left)
    again = run_cli(args, env=s3_env)  # a retried pod: nothing left to delete, the same end
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["trials"][f"s3://{bucket}/runs/job/glue/t0"]["files"] == 0


def test_removes_the_checkpoint_folders_of_local_trials(run_cli, tmp_path: Path) -> None:
    for trial in ("t3", "t4"):
        for name in TRIAL_FILES:
            path = tmp_path / "out" / "glue" / trial / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    done = run_cli(["remove-checkpoints", "--trial_output", str(tmp_path / "out" / "glue" / "t3")])
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "out" / "glue" / "t3" / "checkpoints").exists()
    assert (tmp_path / "out" / "glue" / "t3" / "results.json").is_file()
    assert len(list((tmp_path / "out" / "glue" / "t4" / "checkpoints").rglob("*"))) == 4


@pytest.mark.parametrize("given", ["/data/out/glue", "s3://bucket/t1-best", "s3://bucket", "/", "s3://t1",
                                   "/data/out/glue/t1/checkpoints"])
def test_a_folder_that_is_not_a_trials_is_refused_naming_the_flag(run_cli, tmp_path: Path, given: str) -> None:
    kept = tmp_path / "glue" / "t1" / "checkpoints" / "ckpt-1.index"
    kept.parent.mkdir(parents=True)
    kept.write_text("x")
    done = run_cli(["remove-checkpoints", "--trial_output", str(tmp_path / "glue" / "t1"), "--trial_output", given])
    assert done.returncode == 2
    assert "--trial_output" in done.stderr and "not a trial's folder" in done.stderr and "Traceback" not in done.stderr
    assert kept.is_file()  # checked before anything was deleted
