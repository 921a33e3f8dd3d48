"""One long line cannot exhaust prepare-data's memory: lines are read and formatted in bounded pieces.

A 100 MB corpus of a single line peaked at 3.2 GB and ended in a MemoryError. Here a few MB
of one line with a bound of 64 KiB: the reader never reads or yields more than the bound,
and every sentence a shard formats stays within it, with no word lost."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from bert_trainer.cli import main
from bert_trainer.prep import shards, worker
from bert_trainer.prep.corpus import word_list
from bert_trainer.prep.instances import Settings

BOUND = 64 << 10


class CountingFile(io.BytesIO):
    """A file that remembers the largest read it was asked for."""

    largest = 0

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        assert size is not None and size >= 0, "an unbounded read"
        self.largest = max(self.largest, size)
        return super().read(size)


def one_line(words: list[str], size: int, seed: int = 0) -> bytes:
    """``size`` bytes of words and no newline, no sentence end: one line, one sentence, one document."""
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        word = rng.choice(words)
        out.append(word)
        n += len(word) + 1
    return " ".join(out).encode()


def test_the_reader_never_holds_more_than_the_bound(vocab_tokens) -> None:
    from bert_trainer.prep.lines import read_lines

    data = b"head line\n" + one_line(word_list(vocab_tokens), 3 << 20) + b"\ntail\n"
    fh = CountingFile(data)
    pieces = list(read_lines(fh, 0, len(data), BOUND))
    assert fh.largest <= BOUND and max(map(len, pieces)) <= BOUND
    assert pieces[0] == b"head line" and pieces[-1] == b"tail" and len(pieces) > 3 * 16
    assert b"".join(pieces[1:-1]) == data[10:-6]  # cut after spaces: nothing lost, nothing added
    wide = ("\u00fc" * 100_000).encode()  # no space to cut at: cut between characters, never inside one
    pieces = list(read_lines(CountingFile(wide), 0, len(wide), 1001))
    assert all(len(p) <= 1001 for p in pieces) and "".join(p.decode("utf-8") for p in pieces) == wide.decode()


@pytest.mark.parametrize("fmt", ["books", "bert"])
def test_a_shard_of_one_long_line_formats_sentences_within_the_bound(vocab_tokens, tmp_path: Path, monkeypatch,
                                                                    fmt: str) -> None:
    monkeypatch.setattr(worker, "MAX_LINE_BYTES", BOUND, raising=False)
    data = one_line(word_list(vocab_tokens), 3 << 20)
    path = tmp_path / "one-line.txt"
    path.write_bytes(data)
    [unit] = shards.plan([shards.scan_file(str(path), fmt)], 1, 0, 1, "c")
    job = worker.Job((str(path),), str(tmp_path / "out"), str(tmp_path), ("[CLS]",), True,
                     Settings(128, 20, 0.15, 0.1, 1), 1)
    [document], _ = worker._documents(job, unit)
    assert max(map(len, document)) <= BOUND and len(document) >= 48
    assert " ".join(document).split() == data.decode().split()


def test_tokenizing_in_pieces_gives_the_same_ids(tokenizer, vocab_tokens, monkeypatch) -> None:
    from bert_trainer.prep.word_cache import CachedWordPiece

    sentences = [one_line(word_list(vocab_tokens), 5_000, seed).decode() for seed in range(40)] + ["", "Ünïcode ok."]
    whole = CachedWordPiece(tokenizer, True).encode_flat(sentences)
    monkeypatch.setattr(worker, "TOKENIZE_CHARS", 20_000, raising=False)
    pieces = worker._encode_bounded(CachedWordPiece(tokenizer, True), sentences)
    assert (pieces[0] == whole[0]).all() and (pieces[1] == whole[1]).all()


def test_prepare_data_on_a_single_line_corpus(vocab_tokens, vocab_file, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(worker, "MAX_LINE_BYTES", BOUND, raising=False)
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "one-line.txt").write_bytes(one_line(word_list(vocab_tokens), 2 << 20))
    out = tmp_path / "out" / "c"
    assert main(["prepare-data", "--input_dir", str(corpus), "--output_dir", str(out), "--vocab_file", vocab_file,
                 "--do_lower_case", "--max_seq_length", "128", "--max_predictions_per_seq", "20", "--dupe_factor",
                 "1", "--n_shards", "1", "--test_split", "0", "--num_workers", "1"]) == 0
    assert sorted(p.name for p in (out / "training").iterdir()) == ["c_training_0000.tfrecord"]
