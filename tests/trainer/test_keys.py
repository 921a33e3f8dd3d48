"""Hostile object keys (issue 13 D1): a key is the bucket's to choose, and none may land outside
the folder it is staged into. Keys go into a real (moto) bucket; every place a listed key becomes a
local path is driven: the `sync` init container, pretraining's and prepare-data's input staging, and
fetching a checkpoint. The tmp folder around the destination must stay untouched."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from bert_trainer import storage


def put(env: dict[str, str], bucket: str, key: str, body: bytes = b"x") -> None:
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"]).put_object(Bucket=bucket, Key=key, Body=body)


def hostile_keys(outside: Path, prefix: str = "corpus") -> dict[str, str]:
    """Name -> a key under `prefix`/ whose path leaves the prefix's destination."""
    return {
        "absolute": f"{prefix}/{outside}/abs.txt",  # corpus//tmp/.../abs.txt: relpath '/tmp/...'
        "dotdot": f"{prefix}/a/../../../escaped.txt",
        "parent": f"{prefix}/..",
        "dot": f"{prefix}/.",
        "empty_segment": f"{prefix}/a//b.txt",
    }


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(destination, a folder outside it): the tests assert nothing lands anywhere but the destination."""
    outside = tmp_path / "outside"
    outside.mkdir()
    return tmp_path / "work" / "dest", outside


@pytest.mark.parametrize("kind", sorted(hostile_keys(Path("/x"))))
def test_sync_refuses_a_key_that_leaves_the_destination(kind, run_cli, s3_env, bucket, layout, tmp_path):
    dest, outside = layout
    prefix = f"corpus-{kind}"  # the parametrized tests share a bucket (its name is cut at 50 characters)
    put(s3_env, bucket, f"{prefix}/ok.txt")
    key = hostile_keys(outside, prefix)[kind]
    put(s3_env, bucket, key)
    before = files_under(tmp_path)
    proc = run_cli(["sync", "--source", f"s3://{bucket}/{prefix}", "--dest", str(dest)], env=s3_env)
    assert files_under(tmp_path) == before, proc.stderr  # refused before anything was written, anywhere
    assert proc.returncode == 2, proc.stderr
    assert "--source" in proc.stderr and key in proc.stderr and "does not stay inside" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sync_keeps_backslashes_and_ignores_the_prefix_itself(run_cli, s3_env, bucket, layout):
    dest, _ = layout
    for key in ("corpus", "corpus/", "corpus/a\\b.txt", "corpus/sub/ok.txt"):
        put(s3_env, bucket, key)
    proc = run_cli(["sync", "--source", f"s3://{bucket}/corpus", "--dest", str(dest)], env=s3_env)
    assert proc.returncode == 0, proc.stderr
    assert files_under(dest) == {"a\\b.txt", "sub", os.path.join("sub", "ok.txt")}


def test_the_one_helper_refuses_every_escape_and_a_symlink_out(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(tmp_path)  # already there: a path through it leaves dest
    ok = storage.Entry("s3://b/p/a/b.txt", "a/b.txt", 1)
    assert storage.local_paths(str(dest), [ok]) == [str(dest / "a" / "b.txt")]
    for rel in ("/etc/passwd", "../x", "a/../../x", "..", ".", "", "a//b", "a/./b", "link/x", "a/\0b"):
        with pytest.raises(storage.UnsafeKey, match="does not stay inside") as exc:
            storage.local_paths(str(dest), [ok, storage.Entry(f"s3://b/p/{rel}", rel, 1)], flag="input_dir")
        assert exc.value.flag == "input_dir"


def test_pretraining_input_staging_refuses_an_escaping_key(s3_env, bucket, layout, tmp_path):
    from bert_trainer.tasks.pretrain.driver import stage_inputs

    scratch, _ = layout
    put(s3_env, bucket, "data/training/part-0.tfrecord")
    put(s3_env, bucket, "data/training/..")  # top level, so the staging used to write scratch/inputs/..
    before = files_under(tmp_path)
    with pytest.raises(storage.UnsafeKey, match="data/training/..") as exc:
        stage_inputs(f"s3://{bucket}/data/training", str(scratch), "train", flag="input_files_dir")
    assert exc.value.flag == "input_files_dir" and files_under(tmp_path) == before


def test_prepare_data_input_staging_refuses_an_escaping_key(s3_env, bucket, layout, tmp_path):
    from bert_trainer.tasks.prepare_data.driver import stage_inputs

    scratch, outside = layout
    put(s3_env, bucket, "raw/book.txt", b"A book.\n")
    put(s3_env, bucket, f"raw/{outside}/abs.txt", b"Hostile.\n")
    entries = storage.check_readable_prefix(f"s3://{bucket}/raw")
    before = files_under(tmp_path)
    with pytest.raises(storage.UnsafeKey) as exc:
        stage_inputs(f"s3://{bucket}/raw", entries, str(scratch), str(tmp_path / "out"))
    assert exc.value.flag == "input_dir" and files_under(tmp_path) == before


def test_prepare_data_cli_exits_2_naming_the_flag_and_the_key(run_cli, s3_env, bucket, layout, tmp_path, minilm_dir):
    scratch, outside = layout
    put(s3_env, bucket, "raw/book.txt", b"A book. It has sentences.\n")
    key = f"raw/{outside}/abs.txt"
    put(s3_env, bucket, key, b"Hostile.\n")
    proc = run_cli(["prepare-data", "--input_dir", f"s3://{bucket}/raw", "--output_dir", str(tmp_path / "out"),
                    "--vocab_file", str(minilm_dir / "vocab.txt"), "--n_shards", "1", "--local_dir", str(scratch)],
                   env=s3_env)
    assert proc.returncode == 2, proc.stderr
    assert "--input_dir" in proc.stderr and key in proc.stderr and "Traceback" not in proc.stderr
    assert not (outside / "abs.txt").exists()


def test_fetching_a_checkpoint_goes_through_the_same_helper(s3_env, bucket, layout, tmp_path):
    from bert_trainer.checkpoints import fetch_checkpoint

    scratch, _ = layout
    put(s3_env, bucket, "run/checkpoints/ckpt-5.index")
    put(s3_env, bucket, "run/checkpoints/ckpt-5.data-00000-of-00001")
    local = fetch_checkpoint(f"s3://{bucket}/run/checkpoints/ckpt-5", str(scratch))
    assert local == str(scratch / "fetched" / "ckpt-5")
    assert files_under(scratch / "fetched") == {"ckpt-5.index", "ckpt-5.data-00000-of-00001"}
