"""The pretraining heads' TensorFlow side (``HEAD`` in this package): the model a pretraining checkpoint's variables
make, and what its SavedModel serves (the masked-LM logits at every position, and the next-sentence logits).
Imported by export and predict only.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from bert_trainer.model.bert import BertPretrainer
from bert_trainer.model.config import BertConfig


def from_weights(cfg: BertConfig, shapes: Mapping[str, Sequence[int]]) -> tf.Module:
    return BertPretrainer(cfg)


def serve(model: tf.Module, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
    every = tf.broadcast_to(tf.range(tf.shape(input_ids)[1])[tf.newaxis, :], tf.shape(input_ids))
    return dict(model({"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
                       "masked_lm_positions": every}, training=False))
