"""BERT with a classification layer on the pooled output (Google run_classifier's head and names)."""

from __future__ import annotations

import tensorflow as tf

from bert_trainer.model.bert import BertEncoder, BertPretrainer
from bert_trainer.model.config import BertConfig
from bert_trainer.model.importer import ImportReport, load_init_checkpoint
from bert_trainer.model.layers import dropout, named_variable, truncated_normal


class BertClassifier(tf.Module):
    def __init__(self, cfg: BertConfig, num_labels: int, seed: int = 12345) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(seed)
        self.cfg = cfg
        self.bert = BertEncoder(cfg, rng)
        self.output_weights = named_variable(truncated_normal([num_labels, cfg.hidden_size], 0.02, rng), "output_weights")
        self.output_bias = named_variable(tf.zeros([num_labels]), "output_bias")

    def named_variables(self) -> dict[str, tf.Variable]:
        return dict(sorted({v.gname: v for v in self.trainable_variables}.items()))

    def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor,
                 training: bool = False, compute_dtype: tf.DType = tf.float32) -> tf.Tensor:
        """fp32 logits [B, num_labels]."""
        _, pooled = self.bert(input_ids, input_mask, segment_ids, training=training, compute_dtype=compute_dtype)
        pooled = dropout(pooled, self.cfg.hidden_dropout_prob, training)
        logits = tf.matmul(pooled, tf.cast(self.output_weights, pooled.dtype), transpose_b=True)
        return tf.cast(logits + tf.cast(self.output_bias, pooled.dtype), tf.float32)


def load_encoder(model: "BertClassifier | BertSpanHead", uri: str, scratch_dir: str) -> ImportReport:
    """Pretrained encoder weights from any checkpoint the pretraining importer reads; the head stays new.

    Loaded through a BertPretrainer, so this project's pretraining checkpoints (object-based),
    Google TF1 checkpoints and Hugging Face safetensors all work alike.
    """
    donor = BertPretrainer(model.cfg)
    report = load_init_checkpoint(donor, uri, scratch_dir)
    donated = donor.named_variables()
    for name, variable in model.named_variables().items():
        if name.startswith("bert/"):
            variable.assign(donated[name])
    return report


class BertSpanHead(tf.Module):
    """BERT with SQuAD's start/end logits over every token (Google run_squad's `cls/squad` layer)."""

    def __init__(self, cfg: BertConfig, seed: int = 12345) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(seed)
        self.cfg = cfg
        self.bert = BertEncoder(cfg, rng)
        self.output_weights = named_variable(truncated_normal([2, cfg.hidden_size], 0.02, rng), "cls/squad/output_weights")
        self.output_bias = named_variable(tf.zeros([2]), "cls/squad/output_bias")

    def named_variables(self) -> dict[str, tf.Variable]:
        return dict(sorted({v.gname: v for v in self.trainable_variables}.items()))

    def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor,
                 training: bool = False, compute_dtype: tf.DType = tf.float32) -> tuple[tf.Tensor, tf.Tensor]:
        """fp32 (start_logits, end_logits), each [B, S]."""
        sequence, _ = self.bert(input_ids, input_mask, segment_ids, training=training, compute_dtype=compute_dtype)
        logits = tf.einsum("bsh,kh->bsk", sequence, tf.cast(self.output_weights, sequence.dtype))
        logits = tf.cast(logits + tf.cast(self.output_bias, sequence.dtype), tf.float32)
        return logits[:, :, 0], logits[:, :, 1]
