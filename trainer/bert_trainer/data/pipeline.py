"""tf.data input pipeline for pretraining records: list files, shard by rank,
interleave, shuffle, repeat, batch, parse, prefetch.

Sharding is by file (each Horovod rank reads a disjoint subset, as in NVIDIA's
recipe); with fewer files than ranks we fall back to sharding records so no rank
starves.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from bert_trainer.data.schema import parse_batch

log = logging.getLogger(__name__)

RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".record")


def list_record_files(directory: str) -> list[str]:
    """Every regular, non-hidden file in ``directory`` (sorted, so all ranks agree).
    NVIDIA's shards have names like ``books_wiki_en_corpus_training_0001`` with no
    suffix, so we accept any name rather than filter by extension."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory} is not a directory")
    names = sorted(n for n in os.listdir(directory) if not n.startswith(".") and not n.startswith("_"))
    return [os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))]


def pretraining_dataset(
    files: list[str],
    batch_size: int,
    max_seq_length: int,
    max_predictions_per_seq: int,
    *,
    is_training: bool = True,
    rank: int = 0,
    num_ranks: int = 1,
    seed: int = 12345,
    shuffle_buffer: int = 1000,
) -> tf.data.Dataset:
    """Batches of parsed features for one rank. Training data repeats forever and is
    shuffled (files and records); eval data is read once, in order."""
    if not files:
        raise ValueError("no input files")
    ds = tf.data.Dataset.from_tensor_slices(sorted(files))
    shard_records = len(files) < num_ranks
    if num_ranks > 1 and not shard_records:
        ds = ds.shard(num_ranks, rank)
    if is_training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not is_training)
    if num_ranks > 1 and shard_records:
        log.warning("event=record_sharding files=%d ranks=%d reason=fewer_files_than_ranks", len(files), num_ranks)
        ds = ds.shard(num_ranks, rank)
    if is_training:
        ds = ds.shuffle(shuffle_buffer, seed=seed + rank, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=is_training)
    ds = ds.map(lambda s: parse_batch(s, max_seq_length, max_predictions_per_seq),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
