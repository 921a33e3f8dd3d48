"""Evaluation and prediction batches of similar lengths, each cut to its longest example.

Why: features are padded to --max_seq_length, and the encoder's cost grows with the
padded length, so a dev set of short examples (CoLA's sentences average ~11 WordPiece
tokens, MRPC's pairs 53, at 128) is mostly padding. Examples are taken in order of
length, so each batch holds examples of about one length, and each batch is cut as
training's are (:func:`bert_trainer.finetune.loop.trim_padding`). Outputs come back
in the examples' own order.

Exact only for an output that reads real tokens alone: the [CLS] classifier (padded
keys get a -10000 attention bias, so they add exactly zero to every real token's
attention). Not for SQuAD's per-position logits: its n-best search ranks padded
positions too (as Google's run_squad does), so cutting them away can change answers.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import numpy as np

#: The per-token features a batch is cut on (the others, e.g. labels, are one value per example); training's
#: trim_padding (finetune/loop.py) cuts the same ones.
SEQUENCE_KEYS = ("input_ids", "input_mask", "segment_ids")


def cut_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                multiple: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(row indices, their features cut to the longest of them rounded up to `multiple` tokens), shortest first."""
    mask = arrays["input_mask"]
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    padded = mask.shape[1]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        longest = int(lengths[rows].max())
        length = min(max(-(-longest // multiple), 1) * multiple, padded)
        yield rows, {key: value[rows, :length] if key in SEQUENCE_KEYS else value[rows] for key, value in arrays.items()}


def run_cut(fn: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]], arrays: Mapping[str, np.ndarray],
            batch_size: int, multiple: int = 8) -> dict[str, np.ndarray]:
    """Every output of `fn` (one row per example) over all rows of `arrays`, run on :func:`cut_batches`, in the
    rows' own order. `multiple` bounds the shapes a compiled function sees."""
    out: dict[str, np.ndarray] = {}
    count = len(arrays["input_mask"])
    for rows, batch in cut_batches(arrays, batch_size, multiple):
        for name, value in fn(batch).items():
            if name not in out:
                out[name] = np.empty((count, *value.shape[1:]), value.dtype)
            out[name][rows] = value
    return out
