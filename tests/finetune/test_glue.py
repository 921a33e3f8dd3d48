"""GLUE fine-tuning of the real pretrained MiniLM through the CLI, and GLUE files with bad data."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from tests.tf_state import run_trainer

pytest.importorskip("tensorflow")

ANIMALS = ["cat", "dog", "horse", "bird", "fish", "cow", "sheep", "goat", "lion", "tiger", "mouse", "rabbit"]
FIRST = ["the {} sleeps in the sun", "a small {} runs across the field", "my neighbour's {} is hungry",
         "yesterday the {} escaped from the farm", "the old {} looks tired"]
SECOND = ["a {} was seen sleeping", "everyone watched the {} carefully", "the {} ate all the food",
          "nobody could catch the {}", "there is a {} near the house"]
HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Path:
    return minilm_dir


def pair_task(path: Path, count: int, seed: int) -> None:
    """MRPC-layout pairs, label 1 when both sentences are about the same animal: learnable, not trivial by length."""
    rng = random.Random(seed)
    lines = [HEADER]
    for i in range(count):
        a = rng.choice(ANIMALS)
        same = i % 2 == 0
        b = a if same else rng.choice([x for x in ANIMALS if x != a])
        lines.append(f"{int(same)}\t{i}\t{i + 100000}\t{rng.choice(FIRST).format(a)}\t{rng.choice(SECOND).format(b)}")
    path.write_text("\n".join(lines) + "\n")


def glue(minilm: Path, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["glue", "--task_name", "MRPC", "--data_dir", str(data), "--vocab_file", str(minilm / "vocab.txt"),
            "--do_lower_case", "--bert_config_file", str(minilm / "config.json"),
            "--init_checkpoint", str(minilm / "model.safetensors"), "--output_dir", str(out),
            "--do_train", "--do_eval", "--max_seq_length", "32", "--train_batch_size", "16", "--learning_rate", "5e-5",
            "--num_train_epochs", "4", "--warmup_proportion", "0.1", "--optimizer", "adam", "--precision", "fp32", *extra]
    return run_trainer(args, cwd=out.parent)


def test_minilm_learns_a_sentence_pair_task_well_above_chance(minilm: Path, tmp_path: Path) -> None:
    data = tmp_path / "MRPC"
    data.mkdir()
    pair_task(data / "train.tsv", 256, seed=1)
    pair_task(data / "dev.tsv", 96, seed=2)
    result = glue(minilm, data, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "event=init_checkpoint_summary loaded=" in result.stderr  # MiniLM weights, not random ones
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["steps"] == 64  # 256 examples x 4 epochs / batch 16
    assert results["dev"]["accuracy"] >= 0.8, results  # chance is 0.5
    assert results["dev"]["f1"] >= 0.8
    assert json.loads((tmp_path / "out" / "progress.json").read_text())["step"] == 64
    assert results["checkpoint"].startswith(str(tmp_path / "out" / "checkpoints"))


@pytest.mark.parametrize(("write", "flag_or_place"), [
    (lambda d: (d / "train.tsv").write_text(HEADER + "\n1\tonly three\tcolumns\n"), "train.tsv:2: expected at least 5"),
    (lambda d: (d / "train.tsv").write_text(HEADER + "\nyes\t1\t2\ta\tb\n"), "train.tsv:2: label must be one of 0, 1"),
    (lambda d: (d / "train.tsv").write_text(HEADER + "\n"), "train.tsv: no examples"),
    (lambda d: (d / "train.tsv").write_bytes(HEADER.encode() + b"\n1\t1\t2\t\xff\xfe\tb\n"), "train.tsv:2: not UTF-8"),
])
def test_bad_glue_files_exit_2_naming_file_and_line(minilm: Path, tmp_path: Path, write, flag_or_place: str) -> None:
    data = tmp_path / "MRPC"
    data.mkdir()
    pair_task(data / "dev.tsv", 4, seed=3)
    write(data)
    result = glue(minilm, data, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-2000:]
    assert flag_or_place in result.stderr and "Traceback" not in result.stderr


def test_missing_split_and_bad_vocab_fail_before_loading_tensorflow(minilm: Path, tmp_path: Path) -> None:
    data = tmp_path / "MRPC"
    data.mkdir()
    pair_task(data / "train.tsv", 4, seed=3)
    result = glue(minilm, data, tmp_path / "out")
    assert result.returncode == 2 and "--data_dir:" in result.stderr and "dev.tsv: not found" in result.stderr
    pair_task(data / "dev.tsv", 4, seed=3)
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("hello\nworld\n")
    args = ["glue", "--task_name", "MRPC", "--data_dir", str(data), "--vocab_file", str(bad_vocab), "--bert_model", "base",
            "--output_dir", str(tmp_path / "out2")]
    result = run_trainer(args, cwd=tmp_path)
    assert result.returncode == 2 and "--vocab_file:" in result.stderr and "missing [CLS]" in result.stderr


def test_glue_reads_and_writes_object_storage_with_fp16_and_xla(minilm: Path, tmp_path: Path, s3_server: dict) -> None:
    """Data from and results to a moto S3 server on loopback; a tiny model keeps it quick."""
    import boto3

    env = s3_server
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="glue")
    for split, count in (("train", 32), ("dev", 8)):
        pair_task(tmp_path / f"{split}.tsv", count, seed=len(split))
        s3.upload_file(str(tmp_path / f"{split}.tsv"), "glue", f"MRPC/{split}.tsv")
    tiny = json.dumps({"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 64, "max_position_embeddings": 64})
    args = ["glue", "--task_name", "MRPC", "--data_dir", "s3://glue/MRPC", "--vocab_file", str(minilm / "vocab.txt"),
            "--do_lower_case", "--bert_config_json", tiny, "--output_dir", "s3://glue/out", "--do_train", "--do_eval",
            "--max_seq_length", "32", "--train_batch_size", "8", "--num_train_epochs", "1", "--precision", "fp16", "--use_xla"]
    result = run_trainer(args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(s3.get_object(Bucket="glue", Key="out/results.json")["Body"].read())
    assert results["steps"] == 4 and set(results["dev"]) == {"accuracy", "f1"}
    assert results["checkpoint"] == "s3://glue/out/checkpoints/ckpt-4"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="glue", Prefix="out/checkpoints/")["Contents"]]
    assert any(key.endswith(".index") for key in keys)
