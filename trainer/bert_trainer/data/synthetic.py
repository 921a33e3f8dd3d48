"""Write small pretraining record sets in the standard schema, for tests, smoke
runs and benchmarks (no corpus or tokenizer needed).

The "language" is learnable on purpose, like text: every sentence pair has a
topic, a topic owns a small block of the vocabulary, and word frequencies inside a
block are Zipfian (s=1.5). A model learns quickly the frequencies, then that masked words come from the topic of
their context (a real, context-dependent drop in MLM loss), and that sentence B
shares A's topic for IsNext (label 0) but not for a random pair (label 1, Google's
NSP convention).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

CLS, SEP, MASK = 2, 3, 4
FIRST_WORD = 5


def _int_feature(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float_feature(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


NUM_TOPICS = 8


def _topic_words(rng: np.random.Generator, words: int, topic: int, n: int) -> list[int]:
    """n token ids from ``topic``'s block of the vocabulary, Zipf-distributed."""
    block = max(words // NUM_TOPICS, 1)
    p = 1.0 / np.arange(1, block + 1) ** 1.5
    picks = rng.choice(block, size=n, p=p / p.sum())
    return [FIRST_WORD + (topic * block + int(w)) % words for w in picks]


def make_example(rng: np.random.Generator, vocab_size: int, max_seq_length: int,
                 max_predictions_per_seq: int, fixed_length: bool) -> dict[str, np.ndarray]:
    """One example as numpy arrays (also used directly by tests that need exact batches)."""
    words = vocab_size - FIRST_WORD
    length = max_seq_length if fixed_length else int(rng.integers(max_seq_length // 2, max_seq_length + 1))
    len_a = (length - 3) // 2
    len_b = length - 3 - len_a
    is_random = int(rng.integers(0, 2))
    topic_a = int(rng.integers(0, NUM_TOPICS))
    topic_b = (topic_a + int(rng.integers(1, NUM_TOPICS))) % NUM_TOPICS if is_random else topic_a
    seq_a = _topic_words(rng, words, topic_a, len_a)
    seq_b = _topic_words(rng, words, topic_b, len_b)
    tokens = [CLS] + seq_a + [SEP] + seq_b + [SEP]
    segments = [0] * (len_a + 2) + [1] * (len_b + 1)
    candidates = [i for i, t in enumerate(tokens) if t not in (CLS, SEP)]
    n_pred = min(max_predictions_per_seq, max(1, int(round(len(tokens) * 0.15))))
    positions = sorted(rng.choice(candidates, size=n_pred, replace=False).tolist())
    labels = [tokens[p] for p in positions]
    for p in positions:
        tokens[p] = MASK
    pad = max_seq_length - len(tokens)
    pad_p = max_predictions_per_seq - n_pred
    return {
        "input_ids": np.array(tokens + [0] * pad, np.int64),
        "input_mask": np.array([1] * len(tokens) + [0] * pad, np.int64),
        "segment_ids": np.array(segments + [0] * pad, np.int64),
        "masked_lm_positions": np.array(positions + [0] * pad_p, np.int64),
        "masked_lm_ids": np.array(labels + [0] * pad_p, np.int64),
        "masked_lm_weights": np.array([1.0] * n_pred + [0.0] * pad_p, np.float32),
        "next_sentence_labels": np.array([is_random], np.int64),
    }


def make_batch(seed: int, batch_size: int, vocab_size: int, max_seq_length: int,
               max_predictions_per_seq: int, fixed_length: bool = True) -> dict[str, np.ndarray]:
    """A stacked batch of synthetic examples (int32, as the input pipeline yields)."""
    rng = np.random.default_rng(seed)
    rows = [make_example(rng, vocab_size, max_seq_length, max_predictions_per_seq, fixed_length)
            for _ in range(batch_size)]
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in out.items()}


def write_synthetic_records(directory: str, *, num_files: int = 2, examples_per_file: int = 64,
                            vocab_size: int = 128, max_seq_length: int = 32, max_predictions_per_seq: int = 5,
                            seed: int = 0, fixed_length: bool = False, prefix: str = "part") -> list[str]:
    """Write ``num_files`` TFRecord shards and return their paths."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for f in range(num_files):
        path = os.path.join(directory, f"{prefix}-{f:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(examples_per_file):
                ex = make_example(rng, vocab_size, max_seq_length, max_predictions_per_seq, fixed_length)
                feats = {k: (_float_feature(v) if v.dtype == np.float32 else _int_feature(v)) for k, v in ex.items()}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
        paths.append(path)
    return paths
