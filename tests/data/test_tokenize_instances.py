"""WordPiece tokenization with the real uncased vocab, and the instance algorithm's
statistics (masking 15% with 80/10/10, NSP ~50%, lengths), determinism."""

import random
from pathlib import Path

import pytest

from bert_trainer.prep.instances import Settings, SpecialIds, create_instances
from bert_trainer.prep.text import documents
from bert_trainer.prep.vocab import VocabError, parse_vocab, tokenize_sentences


def test_uncased_wordpiece(tokenizer, vocab_tokens):
    ids = tokenize_sentences(tokenizer, ["Héllo, WORLD! Unaffable."])[0]
    assert [vocab_tokens[i] for i in ids] == ["hello", ",", "world", "!", "una", "##ffa", "##ble", "."]


def test_vocab_validation():
    with pytest.raises(VocabError, match="missing"):
        parse_vocab(b"a\nb\n", "v.txt")
    with pytest.raises(VocabError, match="UTF-8"):
        parse_vocab(b"[PAD]\n\xff\xfe\n", "v.txt")
    with pytest.raises(VocabError, match="empty"):
        parse_vocab(b"", "v.txt")
    with pytest.raises(VocabError, match="duplicate"):
        parse_vocab(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n[PAD]\n", "v.txt")


def special_ids(vocab_tokens) -> SpecialIds:
    index = {t: i for i, t in enumerate(vocab_tokens)}
    return SpecialIds(index["[CLS]"], index["[SEP]"], index["[MASK]"], len(vocab_tokens),
                      [t.startswith("##") for t in vocab_tokens])


@pytest.fixture(scope="module")
def token_docs(corpus_dir, tokenizer):
    docs = []
    for path in sorted(Path(corpus_dir).iterdir()):
        for doc in documents(path.read_text()):
            docs.append([ids for ids in tokenize_sentences(tokenizer, doc) if ids])
    return docs


@pytest.mark.parametrize("wwm", [False, True])
def test_masking_and_nsp_statistics(token_docs, vocab_tokens, wwm):
    ids = special_ids(vocab_tokens)
    s = Settings(128, 20, 0.15, 0.1, dupe_factor=2, whole_word_mask=wwm)
    insts = create_instances(token_docs, s, ids, random.Random(1))
    assert len(insts) > 500
    masked = total = n_mask = n_same = n_rand = 0
    labels = []
    for input_ids, seg, positions, orig, nsp in insts:
        assert len(input_ids) <= 128 and len(seg) == len(input_ids)
        assert input_ids[0] == ids.cls and input_ids[-1] == ids.sep and input_ids.count(ids.sep) + \
            sum(1 for p, o in zip(positions, orig) if o == ids.sep) >= 2
        assert 1 <= len(positions) <= 20 and positions == sorted(set(positions))
        assert 0 not in positions and not {ids.cls, ids.sep} & set(orig)
        total += len(input_ids)
        masked += len(positions)
        labels.append(nsp)
        for p, o in zip(positions, orig):
            if input_ids[p] == ids.mask:
                n_mask += 1
            elif input_ids[p] == o:
                n_same += 1
            else:
                n_rand += 1
        if wwm:  # a predicted continuation piece implies its word start is predicted too
            pos = set(positions)
            for p, o in zip(positions, orig):
                assert not ids.is_continuation[o] or p - 1 in pos, f"whole-word masking split a word at {p}"
    assert abs(masked / total - 0.15) < 0.015, masked / total
    assert abs(n_mask / masked - 0.8) < 0.02 and abs(n_same / masked - 0.1) < 0.02 \
        and abs(n_rand / masked - 0.1) < 0.02, (n_mask, n_same, n_rand)
    # A chunk of a single sentence (the tail of a short article) always gets a random
    # next sentence, as in BERT's recipe, so short documents lean towards label 1.
    assert 0.45 < sum(labels) / len(labels) < 0.65, sum(labels) / len(labels)
    lengths = [len(i[0]) for i in insts]
    assert sum(1 for n in lengths if n >= 120) / len(lengths) > 0.3  # packing fills many sequences


def test_deterministic_for_a_seed(token_docs, vocab_tokens):
    ids = special_ids(vocab_tokens)
    s = Settings(512, 80, 0.15, 0.1, dupe_factor=1)
    a = create_instances(token_docs[:20], s, ids, random.Random(5))
    b = create_instances(token_docs[:20], s, ids, random.Random(5))
    c = create_instances(token_docs[:20], s, ids, random.Random(6))
    assert a == b and a != c
    assert max(len(i[0]) for i in a) <= 512 and max(len(i[2]) for i in a) <= 80


def test_nsp_balance_on_long_documents(token_docs, vocab_tokens):
    # Only forced cases (a one-sentence chunk: a document's tail, or a short target,
    # drawn once per document and pass) push label 1 above 50%; on long documents at
    # full length the coin flip shows.
    long_docs = [d for d in token_docs if len(d) >= 100]  # the books
    assert len(long_docs) >= 2
    insts = create_instances(long_docs, Settings(128, 20, 0.15, 0.0, dupe_factor=10), special_ids(vocab_tokens),
                             random.Random(3))
    frac = sum(i[4] for i in insts) / len(insts)
    assert len(insts) > 500 and abs(frac - 0.5) < 0.05, (len(insts), frac)


def test_fast_record_encoding_matches_protobuf():
    """The hand-padded encoding equals the plain one and TensorFlow's own protobuf."""
    from tensorflow.core.example import example_pb2

    from bert_trainer.prep.records import padded_pretraining_example, pretraining_example

    ids, seg, pos, lab = [101, 7, 70000, 102, 9, 102], [0, 0, 0, 0, 1, 1], [2, 4], [70000, 9]
    fast = padded_pretraining_example(ids, seg, pos, lab, 1, 8, 3)
    plain = pretraining_example(ids + [0, 0], [1] * 6 + [0, 0], seg + [0, 0], pos + [0], lab + [0],
                                [1.0, 1.0, 0.0], 1)
    assert fast == plain
    ex = example_pb2.Example.FromString(fast).features.feature
    assert list(ex["input_ids"].int64_list.value) == ids + [0, 0]
    assert list(ex["masked_lm_weights"].float_list.value) == [1.0, 1.0, 0.0]
    assert list(ex["next_sentence_labels"].int64_list.value) == [1]


@pytest.mark.parametrize("seq,pred,wwm", [(128, 20, False), (512, 80, True)])
def test_batch_encoding_gives_the_bytes_of_the_one_record_encoder(token_docs, vocab_tokens, seq, pred, wwm):
    """encode_batch (numpy varints, cached headers) writes, record for record, what the plain encoder writes
    for each instance; TensorFlow parses it back to the instance."""
    import numpy as np
    from tensorflow.core.example import example_pb2

    from bert_trainer.prep.instances import Corpus, create_batches
    from bert_trainer.prep.records import encode_batch, frame, padded_pretraining_example, read_records

    s = Settings(seq, pred, 0.15, 0.1, dupe_factor=1, whole_word_mask=wwm)
    ids = special_ids(vocab_tokens)
    [batch] = list(create_batches(Corpus.from_documents(token_docs[:30]), s, ids, random.Random(2),
                                  np.random.default_rng(2)))
    framed = encode_batch(batch, seq, pred)
    assert len(framed) == len(batch) > 50
    for i, record in enumerate(framed):
        inst = batch.instance(i)
        assert record == frame(padded_pretraining_example(*inst, seq, pred))
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tfrecord") as fh:
        fh.write(b"".join(framed))
        fh.flush()
        first = example_pb2.Example.FromString(next(read_records(fh.name))).features.feature
    input_ids, segment_ids, positions, labels, nsp = batch.instance(0)
    assert list(first["input_ids"].int64_list.value) == input_ids + [0] * (seq - len(input_ids))
    assert list(first["segment_ids"].int64_list.value) == segment_ids + [0] * (seq - len(segment_ids))
    assert list(first["masked_lm_ids"].int64_list.value) == labels + [0] * (pred - len(labels))
    assert list(first["next_sentence_labels"].int64_list.value) == [nsp]


def test_varint_rows_match_the_one_value_encoder_for_every_width():
    import numpy as np

    from bert_trainer.prep.records import _varint, varint_rows

    rng = np.random.default_rng(0)
    for top in (100, 30522, 1 << 16, 1 << 21):  # one byte only; a BERT vocab; past the tables; the largest
        values = rng.integers(0, top, (7, 9))
        values[0, :3] = [0, top - 1, min(127, top - 1)]
        packed, ends = varint_rows(values)
        rows = [b"".join(_varint(int(v)) for v in row) for row in values]
        assert packed == b"".join(rows) and ends.tolist() == np.cumsum([len(r) for r in rows]).tolist()
    with pytest.raises(ValueError, match="2\\*\\*21"):
        varint_rows(np.array([[1 << 21]]))


def test_importing_the_record_encoder_changes_nothing_and_probes_nothing():
    """The CRC32C implementation is chosen on first use, not at import: importing the module for its encoders
    leaves the environment alone and loads no library (a fresh interpreter, so nothing was imported before)."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; before = dict(os.environ)\n"
            "import bert_trainer.prep.records as r\n"
            "assert dict(os.environ) == before, set(os.environ) ^ set(before)\n"
            "assert r.crc32c_implementation.cache_info().currsize == 0\n"
            "assert r.crc32c(b'123456789') == r.crc32c_python(b'123456789') == 0xE3069283\n"
            "print(r.crc32c_implementation() is not r.crc32c_python)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"]  # a native implementation (google-crc32c, a dependency) was found


def test_a_library_that_cannot_be_probed_is_skipped(tmp_path, monkeypatch):
    """Only the errors of reading and loading a library mean 'not this one'; anything else is a bug and raises."""
    from bert_trainer.prep import records

    empty = tmp_path / "tensorflow" / "libtensorflow_framework.so.2"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    monkeypatch.setattr(records.sysconfig, "get_paths", lambda: {"purelib": str(tmp_path), "platlib": str(tmp_path)})
    monkeypatch.setattr(records, "_quiet_load", lambda path: object())  # an empty file would not load either
    with pytest.raises(ValueError):
        records._candidate_symbols(str(empty))  # mmap refuses an empty file
    assert records._absl_crc32c() is None
