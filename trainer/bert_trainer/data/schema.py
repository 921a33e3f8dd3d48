"""The de-facto standard BERT pretraining TFRecord schema (Google's
create_pretraining_data.py, also NVIDIA's): names, dtypes and lengths."""

from __future__ import annotations

import tensorflow as tf

INT_SEQ_FEATURES = ("input_ids", "input_mask", "segment_ids")
INT_PRED_FEATURES = ("masked_lm_positions", "masked_lm_ids")


def feature_spec(max_seq_length: int, max_predictions_per_seq: int) -> dict[str, tf.io.FixedLenFeature]:
    """Parsing spec; the lengths must equal what the records were written with."""
    spec = {name: tf.io.FixedLenFeature([max_seq_length], tf.int64) for name in INT_SEQ_FEATURES}
    spec.update({name: tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64) for name in INT_PRED_FEATURES})
    spec["masked_lm_weights"] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32)
    spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def parse_batch(serialized: tf.Tensor, max_seq_length: int, max_predictions_per_seq: int) -> dict[str, tf.Tensor]:
    """Parse a batch of serialized examples; int64 is narrowed to int32 (what TPUs/GPUs
    and our embedding gathers prefer)."""
    parsed = tf.io.parse_example(serialized, feature_spec(max_seq_length, max_predictions_per_seq))
    return {k: (tf.cast(v, tf.int32) if v.dtype == tf.int64 else v) for k, v in parsed.items()}
