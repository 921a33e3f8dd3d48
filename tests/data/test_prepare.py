"""prepare-data end to end: records in the standard schema that the trainer's input
pipeline reads unchanged, determinism, restart, object storage, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bert_trainer.cli import main
from tests.tf_state import run_trainer

CORPUS = "books_wiki_en_corpus"


def flags(input_dir, output_dir, vocab, seq=128, pred=20, *, shards=3, seed=12345, dupe=2, workers=1,
          extra=()) -> list[str]:
    return ["prepare-data", "--input_dir", str(input_dir), "--output_dir", str(output_dir), "--vocab_file",
            str(vocab), "--do_lower_case", "--max_seq_length", str(seq), "--max_predictions_per_seq", str(pred),
            "--masked_lm_prob", "0.15", "--short_seq_prob", "0.1", "--dupe_factor", str(dupe), "--n_shards",
            str(shards), "--test_split", "10", "--random_seed", str(seed), "--num_workers", str(workers), *extra]


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(out.glob("*/*.tfrecord"))}


@pytest.mark.parametrize("seq,pred", [(128, 20), (512, 80)])
def test_records_feed_the_pretraining_pipeline(corpus_dir, vocab_file, tmp_path, seq, pred):
    import tensorflow as tf

    from bert_trainer.data.pipeline import list_record_files, pretraining_dataset

    out = tmp_path / "out" / CORPUS
    assert main(flags(corpus_dir, out, vocab_file, seq, pred, extra=["--do_whole_word_mask"] * (seq == 512))) == 0
    results = json.loads((out / "results.json").read_text())
    progress = json.loads((out / "progress.json").read_text())
    assert results["trainingShards"] == 3 and results["testShards"] == 3 and results["instances"] > 100
    assert progress["step"] == progress["totalSteps"] == 6
    files = list_record_files(str(out / "training"))
    assert len(files) == 3 and not any(n.startswith(".") for n in os.listdir(out / "training"))
    # the raw schema, parsed by TensorFlow itself: names, dtypes and lengths
    raw = next(iter(tf.data.TFRecordDataset(files[:1])))
    ex = tf.train.Example.FromString(raw.numpy()).features.feature
    assert sorted(ex) == sorted(["input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                                 "masked_lm_weights", "next_sentence_labels"])
    for name in ("input_ids", "input_mask", "segment_ids"):
        assert len(ex[name].int64_list.value) == seq
    for name in ("masked_lm_positions", "masked_lm_ids"):
        assert len(ex[name].int64_list.value) == pred
    assert len(ex["masked_lm_weights"].float_list.value) == pred
    assert len(ex["next_sentence_labels"].int64_list.value) == 1
    # a few batches through the trainer's pipeline, unchanged
    ds = pretraining_dataset(files, 8, seq, pred, is_training=True, seed=1)
    for batch in ds.take(3):
        assert batch["input_ids"].shape == (8, seq) and batch["masked_lm_weights"].shape == (8, pred)
        mask, ids = batch["input_mask"].numpy(), batch["input_ids"].numpy()
        assert ((ids != 0) == (mask == 1)).all()  # no [PAD] (id 0) inside, padding outside
        assert (ids[:, 0] == 101).all()  # [CLS]
        w = batch["masked_lm_weights"].numpy()
        pos = batch["masked_lm_positions"].numpy()
        assert (w.sum(axis=1) >= 1).all() and ((pos > 0) == (w > 0)).all()
        assert set(batch["next_sentence_labels"].numpy().ravel()) <= {0, 1}
    n_eval = sum(1 for _ in pretraining_dataset(list_record_files(str(out / "test")), 8, seq, pred,
                                                is_training=False).unbatch())
    assert n_eval > 0


def test_deterministic_whatever_the_workers(corpus_dir, vocab_file, tmp_path, run_cli_process):
    a, b, c = (tmp_path / x / CORPUS for x in "abc")
    assert main(flags(corpus_dir, a, vocab_file, workers=1)) == 0
    proc = run_cli_process(flags(corpus_dir, b, vocab_file, workers=2))  # a process pool, in a subprocess
    assert proc.returncode == 0, proc.stderr
    assert main(flags(corpus_dir, c, vocab_file, seed=7)) == 0
    assert shard_bytes(a) == shard_bytes(b)
    assert shard_bytes(a).keys() == shard_bytes(c).keys() and shard_bytes(a) != shard_bytes(c)


def test_restart_skips_finished_shards_not_temp_files(corpus_dir, vocab_file, tmp_path, caplog):
    out = tmp_path / "out" / CORPUS
    assert main(flags(corpus_dir, out, vocab_file)) == 0
    before = shard_bytes(out)
    full = json.loads((out / "results.json").read_text())
    victim = out / "training" / f"{CORPUS}_training_0001.tfrecord"
    victim.unlink()
    stale = out / "training" / f".{victim.name}.tmp-99999"
    stale.write_bytes(b"half a record")  # a killed run's leftover must not count as finished
    kept = out / "training" / f"{CORPUS}_training_0000.tfrecord"
    os.utime(kept, (1, 1))
    assert main(flags(corpus_dir, out, vocab_file)) == 0
    assert shard_bytes(out) == before and not stale.exists()
    assert kept.stat().st_mtime == 1  # not rewritten
    results = json.loads((out / "results.json").read_text())
    assert results["skippedShards"] == 5
    # The counts cover every shard present, not only the one this run made (issue 13 E3a).
    counts = ("documents", "sentences", "instances", "bytes")
    assert {k: results[k] for k in counts} == {k: full[k] for k in counts}
    assert results["countsCover"] == "all shards" and results["madeShards"] == 1
    # A shard published by a version that kept no counts is said to be missing from them.
    (out / ".counts" / "training" / f"{kept.name}.json").unlink()
    assert main(flags(corpus_dir, out, vocab_file)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["countsCover"] == "5 of 6 shards (1 published without counts by an earlier version)"
    assert 0 < results["instances"] < full["instances"]


def _upload_dir(client, bucket, local: str, prefix: str) -> None:
    for p in Path(local).iterdir():
        client.upload_file(str(p), bucket, f"{prefix}/{p.name}")


def test_object_storage_in_and_out(corpus_dir, vocab_file, bucket, s3_env, run_cli_process, tmp_path):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
    _upload_dir(client, bucket, corpus_dir, "raw")
    client.upload_file(vocab_file, bucket, "vocab/vocab.txt")
    out = f"s3://{bucket}/tfrecord/lower_case_1_seq_len_128/{CORPUS}"
    args = flags(f"s3://{bucket}/raw", out, f"s3://{bucket}/vocab/vocab.txt", workers=2,
                 extra=["--local_dir", str(tmp_path / "scratch")])
    proc = run_cli_process(args, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="tfrecord/")["Contents"])
    shards = [k for k in keys if k.endswith(".tfrecord")]
    assert len(shards) == 6 and not any(".tmp-" in k or k.endswith("/.lease.json") for k in keys)
    assert len([k for k in keys if "/.counts/" in k]) == 6  # each shard's counts, beside the splits
    assert any(k.endswith("results.json") for k in keys) and any(k.endswith("progress.json") for k in keys)
    local = tmp_path / "local" / CORPUS
    assert main(flags(corpus_dir, local, vocab_file)) == 0
    for k in shards:  # the same bytes as a local run
        split, name = k.split("/")[-2:]
        assert client.get_object(Bucket=bucket, Key=k)["Body"].read() == (local / split / name).read_bytes()
    again = run_cli_process(args, env=s3_env)
    assert again.returncode == 0 and "skipped=6" in again.stderr


def test_unreachable_bucket_exits_2(corpus_dir, vocab_file, s3_env, tmp_path):
    proc = run_trainer(flags("s3://no-such-bucket/raw", tmp_path / "o", vocab_file), cwd=tmp_path, env=s3_env)
    assert proc.returncode == 2 and "--input_dir" in proc.stderr and "no-such-bucket" in proc.stderr
    proc = run_trainer(flags(corpus_dir, "s3://no-such-bucket/out", vocab_file), cwd=tmp_path, env=s3_env)
    assert proc.returncode == 2 and "--output_dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def _bad_input(tmp_path, corpus_dir, name: str, data: bytes) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for p in Path(corpus_dir).iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("case", ["empty_file", "not_utf8", "missing_vocab", "malformed_vocab", "bad_prob",
                                  "too_many_shards", "missing_input", "forced_wikipedia", "unknown_format"])
def test_bad_input_exits_2_naming_the_flag(case, corpus_dir, vocab_file, tmp_path, capsys):
    inp, vocab, extra, expect = corpus_dir, vocab_file, {}, ()
    if case == "empty_file":
        inp, expect = _bad_input(tmp_path, corpus_dir, "wiki_99", b"\n  \n"), ("--input_dir", "wiki_99", "empty")
    elif case == "not_utf8":
        inp = _bad_input(tmp_path, corpus_dir, "book_99.txt", b"Fine text.\nThen \xff\xfe bytes.\n")
        expect = ("--input_dir", "book_99.txt", "UTF-8", "byte 16")
    elif case == "missing_vocab":
        vocab, expect = tmp_path / "nope.txt", ("--vocab_file", "nope.txt")
    elif case == "malformed_vocab":
        vocab = tmp_path / "vocab.txt"
        vocab.write_text("hello\nworld\n")
        expect = ("--vocab_file", "[CLS]")
    elif case == "bad_prob":
        extra, expect = {"--masked_lm_prob": "1.5"}, ("--masked_lm_prob",)
    elif case == "too_many_shards":
        extra, expect = {"--n_shards": "5000"}, ("--n_shards", "5000")
    elif case == "missing_input":
        inp, expect = tmp_path / "missing", ("--input_dir", "does not exist")
    elif case == "forced_wikipedia":  # the books of the corpus have no <doc> block
        extra, expect = {"--input_format": "wikipedia"}, ("--input_format", "book_00.txt", "no <doc> block")
    elif case == "unknown_format":
        extra, expect = {"--input_format": "text"}, ("--input_format", "invalid choice", "bert")
    out = tmp_path / "out" / CORPUS
    args = flags(inp, out, vocab)
    for k, v in extra.items():
        if k in args:
            args[args.index(k) + 1] = v
        else:
            args += [k, v]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for word in expect:
        assert word in err, err
    assert not out.exists()  # nothing written, not even progress.json


def test_ranks_split_the_shards(corpus_dir, vocab_file, tmp_path, run_cli_process):
    """Under mpirun/horovodrun (rank from the launcher's variables) rank r makes
    shards r, r+size, ...; rank 0 writes results.json once every shard exists."""
    import subprocess
    import sys

    single = tmp_path / "single" / CORPUS
    assert main(flags(corpus_dir, single, vocab_file)) == 0
    out = tmp_path / "ranks" / CORPUS
    args = flags(corpus_dir, out, vocab_file, extra=["--horovod"])
    args.remove("--num_workers"), args.remove("1")
    package_dir = os.path.dirname(os.path.abspath(__import__("bert_trainer").__file__))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if os.path.basename(package_dir) == "bert_trainer":  # a worktree shim; never the repository root (operator/)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(package_dir), os.environ.get("PYTHONPATH")) if p)
    procs = [subprocess.Popen([sys.executable, "-m", "bert_trainer", *args], cwd=tmp_path, text=True,
                              env={**env, "OMPI_COMM_WORLD_RANK": str(r), "OMPI_COMM_WORLD_SIZE": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert "rank=1 size=2 mine=3" in errs[1] and "workers=1" in errs[1]
    assert shard_bytes(out) == shard_bytes(single)
    results = json.loads((out / "results.json").read_text())
    assert results["worldSize"] == 2 and results["countsCover"] == "all shards"  # rank 0 counts every rank's shards
    assert results["instances"] == json.loads((single / "results.json").read_text())["instances"]


def _topic_corpus(directory: Path, vocab_tokens: list[str], n_docs: int, fmt: str = "bert") -> dict[int, int]:
    """A file of ``n_docs`` documents (``fmt``: bert or wikipedia), each written with words of its own
    (disjoint sets of whole-word vocab tokens), so the document a token came from can be read off its
    id: id -> document."""
    import random

    from bert_trainer.prep.corpus import word_list

    words = word_list(vocab_tokens, limit=40 * n_docs)
    rng = random.Random(3)
    owner, lines = {}, []
    index = {t: i for i, t in enumerate(vocab_tokens)}
    for d in range(n_docs):
        own = words[40 * d:40 * (d + 1)]
        owner.update({index[w]: d for w in own})
        sentences = [" ".join(rng.choice(own) for _ in range(rng.randint(6, 14))).capitalize() + "."
                     for _ in range(rng.randint(25, 40))]
        if fmt == "wikipedia":
            lines += [f'<doc id="{d}" url="u{d}" title="Doc {d}">', f"Doc {d}", ""]
            lines += [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)] + ["</doc>"]
        else:
            lines += sentences + [""]
    directory.mkdir()
    (directory / "formatted.txt").write_text("\n".join(lines))
    return owner


@pytest.mark.parametrize("fmt", ["wikipedia", "bert"])
def test_random_next_sentences_never_come_from_the_same_document(fmt, vocab_tokens, vocab_file, tmp_path):
    """Issue 17: with as many shards as documents each shard held one, and every sentence B labelled random
    came from A's own document. Now B comes from another document (the shard's donors) in every split."""
    import tensorflow as tf

    owner = _topic_corpus(tmp_path / "in", vocab_tokens, n_docs=12, fmt=fmt)
    out = tmp_path / "out" / CORPUS
    # 12 documents: 11 training shards of one document each, and one test shard of one document
    assert main(flags(tmp_path / "in", out, vocab_file, shards=11, dupe=3)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["inputFormats"] == {fmt: 1} and results["documents"] == 12
    counts = {"training": [0, 0], "test": [0, 0]}
    for path in sorted(out.glob("*/*.tfrecord")):
        for raw in tf.data.TFRecordDataset([str(path)]):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            ids, seg = f["input_ids"].int64_list.value, f["segment_ids"].int64_list.value
            masked = set(f["masked_lm_positions"].int64_list.value)
            sides = [{owner[t] for i, (t, s) in enumerate(zip(ids, seg)) if s == side and t in owner
                      and i not in masked} for side in (0, 1)]
            label = f["next_sentence_labels"].int64_list.value[0]
            if not sides[0] or not sides[1]:
                continue  # a side of punctuation and masks only
            assert len(sides[0]) == len(sides[1]) == 1, (path.name, sides)  # each side from one document
            assert (sides[0] == sides[1]) == (label == 0), (path.name, label, sides)
            counts[path.parent.name][label] += 1
    for split, (same, random_b) in counts.items():
        assert same > 3 and random_b > 3, (split, counts)  # both labels, in both splits


def test_a_bert_format_corpus_forced_to_books_is_one_document(vocab_tokens, vocab_file, tmp_path, capsys):
    _topic_corpus(tmp_path / "in", vocab_tokens, n_docs=4)
    with pytest.raises(SystemExit) as exc:
        main(flags(tmp_path / "in", tmp_path / "out" / CORPUS, vocab_file, shards=2,
                   extra=["--input_format", "books"]))
    assert exc.value.code == 2
    assert "--n_shards: 1 training documents cannot fill 2 shards" in capsys.readouterr().err
