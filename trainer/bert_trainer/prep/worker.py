"""Turning one planned shard into a TFRecord file (runs in pool workers or ranks).

Determinism: the instance RNG of a shard is seeded from (seed, split, index) only,
so a shard's bytes do not depend on which process makes it or in what order.
Atomicity: records go to a hidden temp file (ignored by the input pipeline, which
skips names starting with '.') that is renamed, or uploaded as one object, when
complete; a restart skips shards whose final file exists. Each shard's counts
are written to ``<output_dir>/.counts/<split>/<name>.json`` just before the shard
is published, so that every published shard has them and a resumed run's
results.json can count the shards an earlier run made.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from typing import BinaryIO

import numpy as np

from bert_trainer import storage
from bert_trainer.prep import text, vocab
from bert_trainer.prep.instances import Corpus, Settings, SpecialIds, create_batches, numpy_rng
from bert_trainer.prep.lines import MAX_LINE_BYTES, read_lines
from bert_trainer.prep.records import encode_block
from bert_trainer.prep.shards import Unit
from bert_trainer.prep.word_cache import CachedWordPiece


@dataclasses.dataclass(frozen=True)
class Job:
    files: tuple[str, ...]  # local paths of the inputs, in plan order
    output_dir: str  # local dir or s3:// prefix
    scratch: str  # local temp space (s3 output is staged here)
    tokens: tuple[str, ...]
    lower_case: bool
    settings: Settings
    seed: int


_STATE: dict = {}


def init(job: Job) -> None:
    """Per process: the tokenizer and special ids (pool initializer)."""
    index = {t: i for i, t in enumerate(job.tokens)}
    _STATE["job"] = job
    _STATE["tokenizer"] = CachedWordPiece(vocab.make_tokenizer(list(job.tokens), job.lower_case), job.lower_case)
    _STATE["ids"] = SpecialIds(index["[CLS]"], index["[SEP]"], index["[MASK]"], len(job.tokens),
                               [t.startswith("##") for t in job.tokens])


#: What results.json counts per shard.
COUNT_KEYS = ("documents", "sentences", "instances", "bytes")
COUNTS_DIR = ".counts"


def counts_uri(output_dir: str, unit: Unit) -> str:
    """Where a shard's counts are kept: a hidden folder beside training/ and test/, which no reader of
    the records lists (pretraining reads training/ and test/ only)."""
    return storage.join(output_dir, COUNTS_DIR, unit.split, f"{unit.name}.json")


def temp_prefix(unit: Unit) -> str:
    return f".{unit.name}.tmp-"


def final_uri(output_dir: str, unit: Unit) -> str:
    return storage.join(output_dir, unit.split, unit.name)


#: Bytes of text a donor document lends per max_seq_length token (a WordPiece token is ~4-5 bytes of
#: English): enough for one sentence B of any length, without reading (or tokenizing) a whole book.
DONOR_BYTES_PER_TOKEN = 8


def _bounded_text(fh, start: int, end: int, max_line_bytes: int) -> str:
    """A document's text with every line at most ``max_line_bytes`` (longer ones cut into lines: prep/lines.py). A
    document no longer than the bound holds no longer line: read at once, as every document was before the bound
    (line by line was 8x slower on ordinary documents, the whole of a corpus)."""
    if end - start <= max_line_bytes:
        fh.seek(start)
        return fh.read(end - start).decode("utf-8")
    return "\n".join(piece.decode("utf-8") for piece in read_lines(fh, start, end, max_line_bytes))


#: Characters of sentences tokenized at once: tokenizing holds a Python string per word (~30x the text), so a
#: shard of one 100 MB book is tokenized in pieces, with the same ids as at once.
TOKENIZE_CHARS = 8 << 20


def _encode_bounded(tokenizer: CachedWordPiece, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``tokenizer.encode_flat(sentences)``, TOKENIZE_CHARS of text at a time."""
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    first = size = 0
    for i, sentence in enumerate(sentences):
        size += len(sentence)
        if size >= TOKENIZE_CHARS:
            parts.append(tokenizer.encode_flat(sentences[first:i + 1]))
            first, size = i + 1, 0
    if first < len(sentences) or not parts:
        parts.append(tokenizer.encode_flat(sentences[first:]))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([t for t, _ in parts]), np.concatenate([n for _, n in parts])


def _documents(job: Job, unit: Unit) -> tuple[list[list[str]], list[list[str]]]:
    """The sentences of the shard's documents, and of a window of each of its donors."""
    docs: list[list[str]] = []
    donors: list[list[str]] = []
    window = DONOR_BYTES_PER_TOKEN * job.settings.max_seq_length
    rng = random.Random(f"donor-windows:{job.seed}:{unit.split}:{unit.index}")
    handles: dict[int, BinaryIO] = {}
    try:
        for f, start, end, fmt in unit.docs:
            fh = handles.get(f) or handles.setdefault(f, open(job.files[f], "rb"))
            docs.extend(text.documents(_bounded_text(fh, start, end, MAX_LINE_BYTES), fmt, MAX_LINE_BYTES))
        for f, start, end, fmt in unit.donors:
            fh = handles.get(f) or handles.setdefault(f, open(job.files[f], "rb"))
            if end - start <= window:
                donors.extend(text.documents(_bounded_text(fh, start, end, MAX_LINE_BYTES), fmt, MAX_LINE_BYTES))
                continue
            offset = start + int(rng.random() * (end - start - window))
            fh.seek(offset)
            sentences = text.window_sentences(fh.read(window).decode("utf-8", "ignore"), fmt)
            if sentences:
                donors.append(sentences)
    finally:
        for fh in handles.values():
            fh.close()
    return docs, donors


def make_shard(unit: Unit) -> dict:
    """Build and publish one shard; returns its counts."""
    job: Job = _STATE["job"]
    t0 = time.perf_counter()
    docs, donor_docs = _documents(job, unit)
    every = docs + donor_docs
    tokens, lengths = _encode_bounded(_STATE["tokenizer"], [s for doc in every for s in doc])
    corpus = Corpus.from_flat(tokens, lengths, [len(doc) for doc in every], own=len(docs))
    n_sentences = sum(len(doc) for doc in docs)
    key = f"{job.seed}:{unit.split}:{unit.index}"
    rng, nprng = random.Random(key), numpy_rng(key)
    s = job.settings

    local_dir = (os.path.join(job.output_dir, unit.split) if not storage.is_s3(job.output_dir)
                 else os.path.join(job.scratch, "out", unit.split))
    os.makedirs(local_dir, exist_ok=True)
    tmp = os.path.join(local_dir, f"{temp_prefix(unit)}{os.getpid()}")
    size = instances = 0
    with open(tmp, "wb") as fh:
        if corpus.own:
            for batch in create_batches(corpus, s, _STATE["ids"], rng, nprng):
                size += fh.write(encode_block(batch, s.max_seq_length, s.max_predictions_per_seq))
                instances += len(batch)
    counts = {"documents": corpus.own, "sentences": n_sentences, "instances": instances, "bytes": size}
    storage.write_bytes(counts_uri(job.output_dir, unit), json.dumps(counts).encode())  # before the shard
    if storage.is_s3(job.output_dir):
        try:
            storage.upload_file(tmp, final_uri(job.output_dir, unit))  # one PUT: all or nothing
        finally:
            os.remove(tmp)
    else:
        os.replace(tmp, final_uri(job.output_dir, unit))
    return {"split": unit.split, "index": unit.index, **counts, "seconds": time.perf_counter() - t0}
