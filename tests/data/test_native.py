"""prepare-data's compiled core (trainer/bert_trainer/prep/_native.c) and its pure-Python fallback write the
same bytes: record for record, draw for draw, shard for shard, and the word cache gives the same ids.

`BERT_TRAINER_PREP_NATIVE=0` selects the Python path (prep/native.py); each test runs both and compares."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from bert_trainer.cli import main
from bert_trainer.prep import native
from bert_trainer.prep.instances import Corpus, Settings, SpecialIds, create_batches, numpy_rng
from bert_trainer.prep.records import encode_block
from bert_trainer.prep.vocab import make_tokenizer
from bert_trainer.prep.word_cache import MARK, CachedWordPiece
from tests.data.test_prepare import flags, shard_bytes

#: What results.json counts (the rest is timing and paths).
COUNTS = ("shards", "trainingShards", "testShards", "documents", "sentences", "instances", "bytes")


@pytest.fixture
def use(monkeypatch):
    """use(True) selects the compiled core, use(False) the Python path, for what runs next in this process."""

    def select(compiled: bool) -> None:
        monkeypatch.setenv(native.ENV, "1" if compiled else "0")
        native.core.cache_clear()
        assert (native.core() is not None) == compiled

    yield select
    native.core.cache_clear()


def test_the_compiled_core_is_built_and_current():
    """pip install (scripts/bootstrap.sh, the image) builds it; without it the suite would test the fallback only."""
    native.core.cache_clear()
    core = native.core()
    assert core is not None, "bert_trainer.prep._native is not built: pip install -e . (needs a C compiler)"
    assert core.ABI == native.ABI


def _documents(rng: random.Random, vocab: int) -> list[list[list[int]]]:
    return [[[rng.randrange(5, vocab) for _ in range(rng.randrange(1, 40))] for _ in range(rng.randrange(1, 12))]
            for _ in range(rng.randrange(1, 25))]


def test_both_paths_make_the_same_records_and_leave_the_generators_alike(use):
    """Random corpora (donors, one-document corpora, ids past two varint bytes), sequence lengths from 8 to 512,
    predictions past the sequence length, whole-word masking: the same bytes, and both generators end in the
    same state (the compiled packing loop draws from a copy of random.Random's state and hands it back)."""
    rs = random.Random(0)
    special = SpecialIds(101, 102, 103, 70_000, [i % 7 == 0 for i in range(70_000)])
    for trial in range(12):
        docs, donors = _documents(rs, 70_000), _documents(rs, 70_000)[: rs.randrange(0, 3)]
        corpus = Corpus.from_documents(docs, donors)
        s = Settings(rs.choice([8, 16, 128, 512]), rs.choice([1, 5, 20, 80]), 0.15, rs.choice([0.1, 0.5]),
                     rs.randrange(1, 4), whole_word_mask=trial % 4 == 3)
        made = {}
        for compiled in (True, False):
            use(compiled)
            rng, nprng = random.Random(f"t{trial}"), numpy_rng(f"t{trial}")
            blocks = [encode_block(b, s.max_seq_length, s.max_predictions_per_seq)
                      for b in create_batches(corpus, s, special, rng, nprng)]
            made[compiled] = (blocks, rng.getstate(), nprng.bit_generator.state)
        assert made[True][0] == made[False][0], (trial, s)
        assert made[True][0], trial  # something was made
        assert made[True][1:] == made[False][1:], trial


def _unicode_file(path: Path, seed: int) -> None:
    """A 'bert'-format file of sentences with accents, CJK, combining marks, the word cache's marker, literal
    special-token text and control characters, between plain ASCII ones."""
    rng = random.Random(seed)
    pieces = ["café", "naïve", "Zürich", "中文", "\u0301x", "Ångström", MARK, "[MASK]", "e\u0301", "tab\there",
              "\u00a0nbsp", "–dash—", "ﬁ", "İstanbul", "the", "cat", "sat", "on", "mat", "zebra", "quantum"]
    docs = []
    for _ in range(30):
        docs.append("\n".join(" ".join(rng.choice(pieces) for _ in range(rng.randrange(3, 14))) + "."
                              for _ in range(rng.randrange(2, 9))))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")


def test_both_paths_write_the_same_shards(use, corpus_dir, vocab_file, tmp_path):
    """prepare-data end to end (tokenization, packing, masking, records, results) on the generated corpus and a
    file of Unicode text: the same shard files and the same counts."""
    inputs = tmp_path / "in"
    shutil.copytree(corpus_dir, inputs)
    _unicode_file(inputs / "unicode.txt", 1)
    made = {}
    for compiled in (True, False):
        use(compiled)
        out = tmp_path / f"out-{compiled}" / "books_wiki_en_corpus"
        assert main(flags(inputs, out, vocab_file, shards=3, dupe=2)) == 0
        results = json.loads((out / "results.json").read_text())
        made[compiled] = (shard_bytes(out), {k: v for k, v in results.items() if k in COUNTS})
    assert made[True][0] == made[False][0]
    assert len(made[True][0]) == 6 and all(made[True][0].values())
    assert made[True][1] == made[False][1] and len(made[True][1]) == len(COUNTS)


def _pipeline(tokenizer, sentences: list[str]) -> list[list[int]]:
    """The tokenizer's steps without its added-token matching: normalizer, pre-tokenizer, WordPiece per word."""
    inner = tokenizer._tokenizer
    return [[t.id for word, _ in inner.pre_tokenizer.pre_tokenize_str(inner.normalizer.normalize_str(s))
             for t in inner.model.tokenize(word)] for s in sentences]


@pytest.mark.parametrize("lower_case", [True, False])
@pytest.mark.parametrize("max_words", [200_000, 10])
def test_both_word_caches_give_the_pipelines_ids_on_any_text(use, vocab_tokens, lower_case, max_words):
    """ASCII and Unicode sentences (every ASCII character, Latin-1 and combining marks, CJK, the marker, spaces of
    every kind, emoji), with a full and a tiny cache: both caches give the ids of the tokenizer's own steps, and
    literal "[MASK]" is text, as Google's script tokenizes it."""
    rng = random.Random(lower_case * 2 + (max_words == 10))
    pool = [chr(c) for c in [*range(0, 128), *range(0xA0, 0x17F), *range(0x300, 0x310), *range(0x4E00, 0x4E20),
                             0x2E3B, 0x200B, 0x2028, 0xE000, 0xFEFF, 0x3000, 0x85, 0x1F600]]
    words = [t for t in vocab_tokens[2000:] if t.isalpha()][:500]
    sentences = ["".join(rng.choice(pool) if rng.random() < 0.3 else " " + rng.choice(words)
                         for _ in range(rng.randrange(0, 15))) for _ in range(2000)]
    sentences += ["a [MASK] b", f"x{MARK}y", MARK, "", " ", "plain ascii words", "".join(map(chr, range(128)))]
    tokenizer = make_tokenizer(vocab_tokens, lower_case)
    want = _pipeline(tokenizer, sentences)
    assert want[-7] == _pipeline(tokenizer, ["a [ MASK ] b"])[0]
    for compiled in (True, False):
        use(compiled)
        cache = CachedWordPiece(tokenizer, lower_case, max_words=max_words)
        assert cache.encode(sentences[:1000]) == want[:1000], compiled
        assert cache.encode(sentences) == want, compiled  # the second time most words come from the cache
        assert cache.cached_words <= max_words


def test_the_cores_crc32c_is_castagnolis():
    import google_crc32c

    core = native.core()
    assert core is not None
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for start in range(8):  # every alignment, every tail length
        for length in (0, 1, 7, 8, 9, 63, 64, 65, 1000):
            chunk = data[start:start + length]
            assert core.crc32c(chunk) == google_crc32c.value(chunk), (start, length)
    assert core.crc32c(b"123456789") == 0xE3069283


def test_the_core_refuses_what_does_not_fit_instead_of_writing_it():
    core = native.core()
    assert core is not None
    i64, one = np.int64, np.ones(1, np.int64)
    ids = np.zeros((1, 8), np.int32)
    args = (ids, np.array([6], i64), one, np.zeros((1, 2), i64), np.zeros((1, 2), i64), one, one, 8, 2)
    assert len(core.encode_records(1, *args)) > 16
    with pytest.raises(ValueError, match="input_ids: expected 8 items"):
        core.encode_records(1, np.zeros((1, 7), np.int32), *args[1:])
    with pytest.raises(ValueError, match="instance 0: length 9"):
        core.encode_records(1, ids, np.array([9], i64), *args[2:])
    with pytest.raises(ValueError, match="negative token id"):
        core.encode_records(1, np.full((1, 8), -1, np.int32), *args[1:])
    with pytest.raises(ValueError, match="625 ints"):
        core.pairs(np.zeros(2, i64), np.array([0, 1], i64), 1, 1, 5, 0.1, (1, 2, 3))
    cache = core.WordCache(10)
    with pytest.raises(KeyError, match="not cached"):
        cache.encode("hello", 0)
    with pytest.raises(ValueError, match="ASCII"):
        cache.missing("café", 0)


def test_a_stale_build_is_not_used(monkeypatch, caplog):
    """An in-place build from an older _native.c (another ABI) would misread its arguments: the Python path runs."""
    core = native.core()
    assert core is not None
    monkeypatch.setattr(core, "ABI", native.ABI - 1)
    native.core.cache_clear()
    try:
        assert native.core() is None
        assert "prep_native_stale" in caplog.text
    finally:
        monkeypatch.undo()
        native.core.cache_clear()
