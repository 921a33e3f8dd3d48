"""Checkpoints are published atomically and a corrupt newest one is skipped (issue 13 E2).

Each case damages the newest of three checkpoints the way a crash, a full disk or a bad copy
does (garbage index, truncated or bit-flipped data, a data object missing from the bucket), then
restores into fresh objects: the previous checkpoint must come back, with the skip logged and
its URI named. The CLI test does the same to a real pretraining run and reruns it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import boto3
import pytest
import tensorflow as tf

from bert_trainer import storage
from bert_trainer.checkpoints import CheckpointManager, newest_checkpoint
from conftest import tiny_flags


def manager(output: str, scratch: Path) -> tuple[tf.Variable, CheckpointManager]:
    weights = tf.Variable(tf.zeros([64]), name="weights")
    return weights, CheckpointManager(tf.train.Checkpoint(weights=weights), output, str(scratch))


def save_three(output: str, tmp_path: Path) -> None:
    weights, writer = manager(output, tmp_path / "scratch-writer")
    for step in (1, 2, 3):
        weights.assign(tf.fill([64], float(step)))
        writer.save(step)


def restore(output: str, tmp_path: Path) -> tuple[int | None, float]:
    """Restore into fresh objects, as a rerun does (a fresh scratch folder, as on a new pod)."""
    weights, reader = manager(output, tmp_path / "scratch-reader")
    step = reader.restore_newest()
    return step, float(weights.numpy()[0])


def skipped(caplog, uri: str) -> str:
    lines = [r.getMessage() for r in caplog.records if "event=checkpoint_skipped" in r.getMessage()]
    assert lines, "no event=checkpoint_skipped logged"
    assert f"ckpt={uri} " in lines[0], lines
    return lines[0]


def data_file(folder: Path, step: int) -> Path:
    return next(folder.glob(f"ckpt-{step}.data-*"))


def s3_object(env: dict[str, str], bucket: str, prefix: str, startswith: str) -> str:
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    return next(k for k in keys if k.rsplit("/", 1)[1].startswith(startswith))


def test_every_checkpoint_is_published_with_a_manifest_last(tmp_path: Path) -> None:
    out = tmp_path / "out"
    save_three(str(out), tmp_path)
    folder = out / "checkpoints"
    manifest = json.loads((folder / "ckpt-3.manifest.json").read_text())
    assert manifest["step"] == 3
    assert manifest["files"] == {p.name: p.stat().st_size for p in folder.glob("ckpt-3.*") if "manifest" not in p.name}
    assert set(manifest["files"]) == {"ckpt-3.index", data_file(folder, 3).name}
    assert (folder / "ckpt-3.manifest.json").stat().st_mtime_ns >= (folder / "ckpt-3.index").stat().st_mtime_ns


def test_a_garbage_newest_index_is_skipped_for_the_previous_checkpoint(tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    save_three(str(out), tmp_path)
    index = out / "checkpoints" / "ckpt-3.index"
    index.write_bytes(b"\xde\xad" * (index.stat().st_size // 2) + b"\x00" * (index.stat().st_size % 2))  # same size
    with caplog.at_level(logging.INFO):
        assert restore(str(out), tmp_path) == (2, 2.0)
    assert "reason=restore_failed" in skipped(caplog, str(out / "checkpoints" / "ckpt-3"))
    assert "event=resumed step=2" in caplog.text


def test_a_truncated_data_file_is_skipped(tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    save_three(str(out), tmp_path)
    data = data_file(out / "checkpoints", 3)
    data.write_bytes(data.read_bytes()[:50])
    with caplog.at_level(logging.INFO):
        assert restore(str(out), tmp_path) == (2, 2.0)
    assert "reason=size_mismatch" in skipped(caplog, str(out / "checkpoints" / "ckpt-3"))


def test_flipped_bytes_of_the_same_size_fail_the_crc_and_are_skipped(tmp_path: Path, s3_env, bucket, caplog) -> None:
    out = f"s3://{bucket}/run"
    save_three(out, tmp_path)
    key = s3_object(s3_env, bucket, "run/checkpoints/", "ckpt-3.data-")
    body = storage.read_bytes(f"s3://{bucket}/{key}")
    storage.write_bytes(f"s3://{bucket}/{key}", bytes(b ^ 0xFF for b in body))
    with caplog.at_level(logging.INFO):
        assert restore(out, tmp_path) == (2, 2.0)
    assert "reason=restore_failed" in skipped(caplog, f"{out}/checkpoints/ckpt-3")


def test_a_data_object_missing_from_the_bucket_is_skipped(tmp_path: Path, s3_env, bucket, caplog) -> None:
    out = f"s3://{bucket}/run"
    save_three(out, tmp_path)
    key = s3_object(s3_env, bucket, "run/checkpoints/", "ckpt-3.data-")
    boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"]).delete_object(Bucket=bucket, Key=key)
    with caplog.at_level(logging.INFO):
        assert restore(out, tmp_path) == (2, 2.0)
    assert "reason=missing_file" in skipped(caplog, f"{out}/checkpoints/ckpt-3")
    assert newest_checkpoint(f"{out}/checkpoints") == (2, f"{out}/checkpoints/ckpt-2")  # what phase 2 would load


def test_checkpoints_without_a_manifest_are_tried_after_those_with_one(tmp_path: Path) -> None:
    """Earlier versions wrote no manifest: such checkpoints restore, but only after every published one."""
    out = tmp_path / "out"
    save_three(str(out), tmp_path)
    folder = out / "checkpoints"
    (folder / "ckpt-3.manifest.json").unlink()  # as if written before manifests, or its publication cut short
    assert restore(str(out), tmp_path) == (2, 2.0)
    for path in folder.glob("*.manifest.json"):
        path.unlink()
    assert restore(str(out), tmp_path) == (3, 3.0)  # a folder written entirely before manifests
    data_file(folder, 3).write_bytes(b"x")
    assert restore(str(out), tmp_path) == (2, 2.0)  # and the same fallback when one does not restore


def test_when_no_checkpoint_restores_the_error_names_each(tmp_path: Path) -> None:
    from bert_trainer.checkpoints import CheckpointError

    out = tmp_path / "out"
    save_three(str(out), tmp_path)
    for step in (1, 2, 3):
        data_file(out / "checkpoints", step).write_bytes(b"x")
    with pytest.raises(CheckpointError) as exc:
        restore(str(out), tmp_path)
    for step in (1, 2, 3):
        assert f"{out / 'checkpoints'}/ckpt-{step}: size_mismatch" in str(exc.value)


def test_a_rerun_resumes_from_the_previous_checkpoint_when_the_newest_is_corrupt(run_cli, records, tmp_path):
    out = tmp_path / "out"
    flags = tiny_flags(records, str(out), steps=20, save=10)
    first = run_cli(flags)
    assert first.returncode == 0, first.stderr[-3000:]
    (out / "checkpoints" / "ckpt-20.index").write_bytes(b"not a checkpoint index")
    (out / "results.json").unlink()
    rerun = run_cli(flags)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"event=checkpoint_skipped ckpt={out / 'checkpoints' / 'ckpt-20'} reason=" in rerun.stderr
    assert "event=resumed step=10" in rerun.stderr and "Traceback" not in rerun.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["resumedFromStep"] == 10 and results["steps"] == 20
    assert results["checkpoint"] == str(out / "checkpoints" / "ckpt-20")
    manifest = json.loads((out / "checkpoints" / "ckpt-20.manifest.json").read_text())  # republished whole
    assert manifest["files"]["ckpt-20.index"] == (out / "checkpoints" / "ckpt-20.index").stat().st_size
