"""Input discovery and the document -> shard plan.

Documents are byte ranges of the input files (a ``<doc ...>`` block of a Wikipedia
extractor file, or a whole book), found with a cheap scan, so the plan is known to
every rank without tokenizing anything. The plan depends only on the inputs, the
seed, ``n_shards`` and ``test_split``: every rank computes the same one.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import re

#: A document starts where a line starts with a <doc> tag (the extractor's own lines), never at a "<doc>"
#: inside an article's text ("no <command> or <doc> given").
_DOC_START = re.compile(rb"^<doc[\s>]", re.MULTILINE)


class InputError(ValueError):
    """Unusable input; the message names it and `flag` the command-line flag to fix."""

    def __init__(self, message: str, flag: str = "input_dir") -> None:
        super().__init__(message)
        self.flag = flag


@dataclasses.dataclass(frozen=True)
class Unit:
    """One output shard: its split, index, file name and the documents in it
    ((file index, start byte, end byte) ranges)."""

    split: str
    index: int
    name: str
    docs: tuple[tuple[int, int, int], ...]


def scan_file(path: str) -> list[tuple[int, int]]:
    """Byte ranges of the documents of one input file; InputError for an empty file
    or one that is not UTF-8 text."""
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
    if data.lstrip()[:4] == b"<doc":
        starts = [m.start() for m in _DOC_START.finditer(data)]
        return [(s, e) for s, e in zip(starts, starts[1:] + [len(data)])]
    return [(0, len(data))]


def shard_name(corpus: str, split: str, index: int, n: int) -> str:
    width = max(4, len(str(max(n - 1, 0))))
    return f"{corpus}_{split}_{index:0{width}d}.tfrecord"


def _balance(docs: list[tuple[int, int, int]], n: int) -> list[list[tuple[int, int, int]]]:
    """Greedy largest-first: each document to the currently lightest shard (bytes)."""
    shards: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    heap = [(0, i) for i in range(n)]
    for doc in sorted(docs, key=lambda d: (-(d[2] - d[1]), d)):
        load, i = heapq.heappop(heap)
        shards[i].append(doc)
        heapq.heappush(heap, (load + doc[2] - doc[1], i))
    return [sorted(s) for s in shards]  # read files in order inside a shard


def plan(doc_ranges: list[list[tuple[int, int]]], n_shards: int, test_split: float, seed: int,
         corpus: str) -> list[Unit]:
    """Training shards (``n_shards``) then test shards (``min(n_shards, test docs)``).
    ``test_split`` percent of the documents, picked at random for ``seed``, are held out."""
    docs = [(f, s, e) for f, ranges in enumerate(doc_ranges) for s, e in ranges]
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
    units = [Unit("training", i, shard_name(corpus, "training", i, n_shards), tuple(d))
             for i, d in enumerate(_balance(train, n_shards))]
    n_test_shards = min(n_shards, len(test))
    units += [Unit("test", i, shard_name(corpus, "test", i, n_test_shards), tuple(d))
              for i, d in enumerate(_balance(test, n_test_shards))] if n_test_shards else []
    return units
