"""The fine-tuning tasks' losses, in the engine's TaskLoss form (bert_trainer.engine).

Each takes (model, batch, training, compute_dtype) and returns scalar fp32 metrics with
"loss", so GLUE and SQuAD train through the same engine as pretraining.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf


def classification_loss(model: tf.Module, batch: Mapping[str, tf.Tensor], training: bool,
                        compute_dtype: tf.DType) -> dict[str, tf.Tensor]:
    """GLUE: mean softmax cross-entropy of a BertClassifier's logits against batch["labels"]."""
    logits = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"], training=training,
                   compute_dtype=compute_dtype)
    return {"loss": tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], logits))}


def span_loss(model: tf.Module, batch: Mapping[str, tf.Tensor], training: bool,
              compute_dtype: tf.DType) -> dict[str, tf.Tensor]:
    """SQuAD: the mean of the start and end cross-entropies over every token (Google's run_squad)."""
    starts, ends = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"], training=training,
                         compute_dtype=compute_dtype)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits
    return {"loss": (tf.reduce_mean(xent(batch["start_positions"], starts))
                     + tf.reduce_mean(xent(batch["end_positions"], ends))) / 2}
