"""A record file cut short or corrupted: exit 2 naming the file and the record, not a DataLossError traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bert_trainer.data.record_check import RecordError, find_bad_record, named_record_errors
from bert_trainer.prep.records import frame
from conftest import PRED, SEQ, tiny_flags


def write(path: Path, records: list[bytes]) -> Path:
    path.write_bytes(b"".join(frame(r) for r in records))
    return path


def test_the_framing_walk_finds_the_record_and_its_offset(tmp_path: Path) -> None:
    records = [b"a" * 10, b"b" * 20, b"c" * 30]
    whole = write(tmp_path / "whole.tfrecord", records)
    assert find_bad_record(str(whole)) is None
    third = (12 + 10 + 4) + (12 + 20 + 4)
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(whole.read_bytes()[:-5])
    assert find_bad_record(str(cut)) == "record 2 at byte 62: truncated (the record needs 46 bytes, the file ends at byte 103)"
    cut.write_bytes(whole.read_bytes()[:third + 5])
    assert find_bad_record(str(cut)).startswith(f"record 2 at byte {third}: truncated (the file ends inside the record's header")
    flipped = bytearray(whole.read_bytes())
    flipped[third + 12 + 3] ^= 1  # a data byte of the third record
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(flipped))
    assert find_bad_record(str(bad)) is None  # the framing holds; only TensorFlow's offset says which data to check
    assert find_bad_record(str(bad), third) == f"record 2 at byte {third}: corrupted (the CRC of the record's data does not match)"


def test_reading_a_truncated_file_names_it(records, tmp_path: Path) -> None:
    from bert_trainer.data.pipeline import list_record_files, pretraining_dataset

    folder = tmp_path / "eval"
    shutil.copytree(records["eval"], folder)
    [path] = list_record_files(str(folder))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-7])  # inside the last record (a cut inside a header reads as the end to TensorFlow)
    files = list_record_files(str(folder))
    with pytest.raises(RecordError, match=rf"^{path}: record 63 at byte \d+: truncated .*make it again"):
        with named_record_errors(files):
            for _ in pretraining_dataset(files, 8, SEQ, PRED, is_training=False):
                pass


def test_pretraining_on_a_truncated_shard_exits_2_naming_it(records, tmp_path: Path, capsys) -> None:
    from bert_trainer.cli import main

    train = tmp_path / "train"
    shutil.copytree(records["train"], train)
    cut = sorted(train.iterdir())[1]
    cut.write_bytes(cut.read_bytes()[:-7])
    code = main(tiny_flags({"train": str(train), "eval": records["eval"]}, str(tmp_path / "out"), steps=40, save=40))
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert f"error: {cut}: record 255 at byte" in err and "truncated" in err and "Traceback" not in err
