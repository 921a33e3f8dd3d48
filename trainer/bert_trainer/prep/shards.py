"""Input discovery and the document -> shard plan.

Documents are byte ranges of the input files (a ``<doc ...>`` block of a Wikipedia
extractor file, a whole book, or the lines between two blank lines of the ``bert``
format), found with a cheap scan, so the plan is known to every rank without
tokenizing anything. The plan depends only on the inputs, the
seed, ``n_shards`` and ``test_split``: every rank computes the same one.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import re

from bert_trainer.prep import text

#: A document starts where a line starts with a <doc> tag (the extractor's own lines), never at a "<doc>"
#: inside an article's text ("no <command> or <doc> given").
_DOC_START = re.compile(rb"^<doc[\s>]", re.MULTILINE)
_NOT_BLANK = re.compile(rb"\S")
_BLANK_LINES = re.compile(text.BLANK_LINES.pattern.encode())  # the bert format's separator, on bytes


class InputError(ValueError):
    """Unusable input; the message names it and `flag` the command-line flag to fix."""

    def __init__(self, message: str, flag: str = "input_dir") -> None:
        super().__init__(message)
        self.flag = flag


#: One document: (file index, start byte, end byte, input format of the file).
Doc = tuple[int, int, int, str]

#: The fewest documents a shard's random next sentences are drawn from. A shard with fewer documents of its
#: own (a small corpus cut into many shards) borrows documents of other shards of its split, so that
#: sentence B labelled random never comes from sentence A's own document (Google's script draws from the
#: whole corpus; a shard of one document would otherwise draw from itself).
MIN_RANDOM_SOURCES = 8


@dataclasses.dataclass(frozen=True)
class Unit:
    """One output shard: its split, index, file name, the documents in it, and the
    documents of other shards its random next sentences may also come from (``donors``,
    only for a shard of fewer than MIN_RANDOM_SOURCES documents)."""

    split: str
    index: int
    name: str
    docs: tuple[Doc, ...]
    donors: tuple[Doc, ...] = ()


def scan_file(path: str, input_format: str = "auto") -> tuple[str, list[tuple[int, int]]]:
    """The format of one input file (``input_format``, or detected for ``auto``) and
    the byte ranges of its documents; InputError for an empty file or one that is not
    UTF-8 text."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if not data.strip():
        raise InputError(f"{path}: empty file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if input_format == "auto":
        input_format = text.detect_format(data[:text.DETECT_BYTES].decode("utf-8", "ignore"),
                                          cut=len(data) > text.DETECT_BYTES)
    if input_format == "wikipedia":
        starts = [m.start() for m in _DOC_START.finditer(data)]
        if not starts:
            raise InputError(f"{path}: no <doc> block (--input_format wikipedia reads WikiExtractor output)",
                             flag="input_format")
        return input_format, [(s, e) for s, e in zip(starts, starts[1:] + [len(data)])]
    if input_format == "bert":
        bounds = [0] + [p for m in _BLANK_LINES.finditer(data) for p in (m.start() + 1, m.end() - 1)] + [len(data)]
        # A document is kept if it holds a non-blank byte; searched in place (slicing copied the whole corpus once).
        return input_format, [(s, e) for s, e in zip(bounds[::2], bounds[1::2]) if _NOT_BLANK.search(data, s, e)]
    return input_format, [(0, len(data))]


def shard_name(corpus: str, split: str, index: int, n: int) -> str:
    width = max(4, len(str(max(n - 1, 0))))
    return f"{corpus}_{split}_{index:0{width}d}.tfrecord"


def _balance(docs: list[Doc], n: int) -> list[list[Doc]]:
    """Greedy largest-first: each document to the currently lightest shard (bytes)."""
    shards: list[list[Doc]] = [[] for _ in range(n)]
    heap = [(0, i) for i in range(n)]
    for doc in sorted(docs, key=lambda d: (-(d[2] - d[1]), d)):
        load, i = heapq.heappop(heap)
        shards[i].append(doc)
        heapq.heappush(heap, (load + doc[2] - doc[1], i))
    return [sorted(s) for s in shards]  # read files in order inside a shard


def _donors(unit_docs: list[Doc], split_docs: list[Doc], corpus_docs: list[Doc], rng: random.Random) -> tuple:
    """Documents from outside the shard for its random next sentences: from its own split or, when every
    document of the split is in this shard, from the rest of the corpus. Sampled by index, so a plan of
    many small shards stays linear in the number of documents."""
    own = set(unit_docs)
    want = MIN_RANDOM_SOURCES - len(own)
    for source in (split_docs, corpus_docs):  # own is a subset of both
        outside = len(source) - len(own)
        if outside <= 0:
            continue
        k = min(want, outside)
        picked = [source[i] for i in rng.sample(range(len(source)), min(len(source), k + len(own)))]
        return tuple(d for d in picked if d not in own)[:k]
    return ()


def plan(scanned: list[tuple[str, list[tuple[int, int]]]], n_shards: int, test_split: float, seed: int,
         corpus: str) -> list[Unit]:
    """Training shards (``n_shards``) then test shards (``min(n_shards, test docs)``), from each
    file's (format, document byte ranges). ``test_split`` percent of the documents, picked at random
    for ``seed``, are held out."""
    docs: list[Doc] = [(f, s, e, fmt) for f, (fmt, ranges) in enumerate(scanned) for s, e in ranges]
    order = list(range(len(docs)))
    random.Random(f"split:{seed}").shuffle(order)
    n_test = int(round(len(docs) * test_split / 100.0))
    if test_split > 0 and len(docs) > 1:
        n_test = max(1, n_test)
    n_test = min(n_test, len(docs) - 1)
    test = [docs[i] for i in order[:n_test]]
    train = [docs[i] for i in order[n_test:]]
    if len(train) < n_shards:
        raise InputError(f"{len(train)} training documents cannot fill {n_shards} shards", flag="n_shards")
    units = []
    for split, split_docs, n in (("training", train, n_shards), ("test", test, min(n_shards, len(test)))):
        for i, shard_docs in enumerate(_balance(split_docs, n) if n else []):
            donors = (_donors(shard_docs, split_docs, docs, random.Random(f"donors:{seed}:{split}:{i}"))
                      if len(shard_docs) < MIN_RANDOM_SOURCES else ())
            units.append(Unit(split, i, shard_name(corpus, split, i, n), tuple(shard_docs), donors))
    return units
