"""Checkpoint retention (`--keep_checkpoint_max`, the operator's `output.keepCheckpoints`): the newest N stay,
locally and in the bucket, never the one resumed from, and resuming still works."""

from __future__ import annotations

from pathlib import Path

import boto3
import tensorflow as tf

from bert_trainer.checkpoints import CheckpointManager, list_checkpoints
from conftest import tiny_flags


def manager(output: str, scratch: Path, keep: int) -> tuple[tf.Variable, CheckpointManager]:
    weights = tf.Variable(tf.zeros([16]), name="weights")
    return weights, CheckpointManager(tf.train.Checkpoint(weights=weights), output, str(scratch), keep=keep)


def steps_under(folder: str) -> list[int]:
    return sorted(candidate.step for candidate in list_checkpoints(folder))


def test_only_the_newest_are_kept_in_a_local_folder(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    weights, writer = manager(out, tmp_path / "scratch", keep=2)
    for step in (10, 20, 30, 40, 50):
        weights.assign(tf.fill([16], float(step)))
        writer.save(step)
    assert steps_under(f"{out}/checkpoints") == [40, 50]
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "out" / "checkpoints").iterdir()) == ["ckpt-40"] * 3 + ["ckpt-50"] * 3


def test_in_the_bucket_the_resumed_checkpoint_survives_and_the_scratch_copy_is_pruned(tmp_path: Path, s3_env, bucket) -> None:
    out = f"s3://{bucket}/run"
    weights, first = manager(out, tmp_path / "scratch-1", keep=2)
    for step in (1, 2, 3):
        weights.assign(tf.fill([16], float(step)))
        first.save(step)
    assert steps_under(f"{out}/checkpoints") == [2, 3]
    # A rerun resumes from 3 and saves 4, 5, 6: 3 stays while it is the run's fallback, 4 goes.
    weights, second = manager(out, tmp_path / "scratch-2", keep=2)
    assert second.restore_newest() == 3 and float(weights.numpy()[0]) == 3.0
    for step in (4, 5, 6):
        weights.assign(tf.fill([16], float(step)))
        second.save(step)
    assert steps_under(f"{out}/checkpoints") == [3, 5, 6]
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
    keys = [o["Key"].rsplit("/", 1)[1] for o in client.list_objects_v2(Bucket=bucket, Prefix="run/checkpoints/")["Contents"]]
    assert {key.split(".")[0] for key in keys} == {"ckpt-3", "ckpt-5", "ckpt-6"}  # no orphaned data or index objects
    assert {p.name.split(".")[0] for p in (tmp_path / "scratch-2" / "checkpoints").iterdir()} <= {"ckpt-3", "ckpt-5", "ckpt-6"}
    weights, third = manager(out, tmp_path / "scratch-3", keep=2)
    assert third.restore_newest() == 6 and float(weights.numpy()[0]) == 6.0


def test_zero_keeps_every_checkpoint(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    weights, writer = manager(out, tmp_path / "scratch", keep=0)
    for step in (1, 2, 3, 4):
        writer.save(step)
    assert steps_under(f"{out}/checkpoints") == [1, 2, 3, 4]


def test_a_pretraining_run_with_keep_two_leaves_the_newest_two_and_resumes(tmp_path: Path, records, run_cli) -> None:
    out = tmp_path / "pretrain"
    flags = [*tiny_flags(records, str(out), steps=20, save=5), "--keep_checkpoint_max", "2"]
    done = run_cli(flags)
    assert done.returncode == 0, done.stderr[-2000:]
    assert steps_under(str(out / "checkpoints")) == [15, 20]
    again = run_cli([*tiny_flags(records, str(out), steps=25, save=5), "--keep_checkpoint_max", "2"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "event=resumed step=20" in again.stderr
    assert steps_under(str(out / "checkpoints")) == [20, 25]  # 20 was the fallback; the final is the newest


def test_a_negative_keep_is_a_usage_error(tmp_path: Path, records, run_cli) -> None:
    done = run_cli([*tiny_flags(records, str(tmp_path / "o")), "--keep_checkpoint_max", "-1"])
    assert done.returncode == 2 and "--keep_checkpoint_max must be 0 (keep all) or positive" in done.stderr
