"""BERT encoder with the two pretraining heads (masked LM tied to the word
embeddings, next-sentence prediction) and their losses/metrics.

Variable names follow Google's TF1 checkpoints (``bert/...``, ``cls/...``);
``BertPretrainer.named_variables()`` is the single map the optimizer (weight
decay exclusion), Horovod (broadcast/allreduce) and importers all share.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from bert_trainer.model.config import BertConfig
from bert_trainer.model.layers import (
    Dense,
    LayerNorm,
    TransformerLayer,
    activation,
    dropout,
    named_variable,
    truncated_normal,
)


class BertEncoder(tf.Module):
    """Token/segment/position embeddings, N transformer layers and the tanh pooler."""

    def __init__(self, cfg: BertConfig, rng: tf.random.Generator) -> None:
        super().__init__()
        std = cfg.initializer_range
        self.cfg = cfg
        self.word_embeddings = named_variable(
            truncated_normal([cfg.vocab_size, cfg.hidden_size], std, rng), "bert/embeddings/word_embeddings")
        self.token_type_embeddings = named_variable(
            truncated_normal([cfg.type_vocab_size, cfg.hidden_size], std, rng), "bert/embeddings/token_type_embeddings")
        self.position_embeddings = named_variable(
            truncated_normal([cfg.max_position_embeddings, cfg.hidden_size], std, rng),
            "bert/embeddings/position_embeddings")
        self.embed_norm = LayerNorm(cfg.hidden_size, "bert/embeddings/LayerNorm", cfg.layer_norm_eps)
        self.layers = [TransformerLayer(cfg, i, rng) for i in range(cfg.num_hidden_layers)]
        self.pooler = Dense(cfg.hidden_size, cfg.hidden_size, "bert/pooler/dense", std, rng)

    def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor,
                 training: bool = False, compute_dtype: tf.DType = tf.float32) -> tuple[tf.Tensor, tf.Tensor]:
        """Return (sequence_output [B,S,H], pooled_output [B,H]) in ``compute_dtype``."""
        seq_len = tf.shape(input_ids)[1]
        emb = (tf.gather(self.word_embeddings, input_ids)
               + tf.gather(self.token_type_embeddings, segment_ids)
               + self.position_embeddings[tf.newaxis, :seq_len, :])
        x = dropout(self.embed_norm(emb), self.cfg.hidden_dropout_prob, training)
        x = tf.cast(x, compute_dtype)
        # Additive mask: 0 where attended, -10000 where padded (Google's constant, safe in fp16 after fp32 softmax).
        mask = tf.cast(input_mask, tf.float32)[:, tf.newaxis, tf.newaxis, :]
        mask_bias = (1.0 - mask) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias, training)
        pooled = tf.math.tanh(self.pooler(x[:, 0, :]))
        return x, pooled


class BertPretrainer(tf.Module):
    """Encoder + MLM head (transform, LayerNorm, tied decoder + bias) + NSP head."""

    def __init__(self, cfg: BertConfig, seed: int = 12345) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(seed)
        std = cfg.initializer_range
        self.cfg = cfg
        self.bert = BertEncoder(cfg, rng)
        self.mlm_transform = Dense(cfg.hidden_size, cfg.hidden_size, "cls/predictions/transform/dense", std, rng)
        self.mlm_norm = LayerNorm(cfg.hidden_size, "cls/predictions/transform/LayerNorm", cfg.layer_norm_eps)
        self.mlm_bias = named_variable(tf.zeros([cfg.vocab_size]), "cls/predictions/output_bias")
        self.nsp_weights = named_variable(truncated_normal([2, cfg.hidden_size], std, rng),
                                          "cls/seq_relationship/output_weights")
        self.nsp_bias = named_variable(tf.zeros([2]), "cls/seq_relationship/output_bias")
        self.act = activation(cfg.hidden_act)

    def named_variables(self) -> dict[str, tf.Variable]:
        """Google-checkpoint name -> variable, in a stable order (sorted by name)
        so that every Horovod rank lists its variables identically."""
        found = {v.gname: v for v in self.trainable_variables}
        return dict(sorted(found.items()))

    def __call__(self, features: Mapping[str, tf.Tensor], training: bool = False,
                 compute_dtype: tf.DType = tf.float32) -> dict[str, tf.Tensor]:
        """Return fp32 ``mlm_logits`` [B,P,V] at the masked positions and ``nsp_logits`` [B,2]."""
        seq, pooled = self.bert(features["input_ids"], features["input_mask"], features["segment_ids"],
                                training=training, compute_dtype=compute_dtype)
        positions = tf.cast(features["masked_lm_positions"], tf.int32)
        picked = tf.gather(seq, positions, batch_dims=1)  # [B,P,H]
        h = self.mlm_norm(self.act(self.mlm_transform(picked)))
        emb = tf.cast(self.bert.word_embeddings, h.dtype)
        # [B*P, H] x [V, H]^T as one 2-D matmul: a batched one would make the tied embedding's
        # gradient a [B, V, H] tensor summed over B (see layers.Dense).
        flat = tf.reshape(h, [-1, self.cfg.hidden_size])
        mlm_logits = tf.matmul(flat, emb, transpose_b=True) + tf.cast(self.mlm_bias, h.dtype)
        mlm_logits = tf.reshape(mlm_logits, tf.concat([tf.shape(h)[:-1], [self.cfg.vocab_size]], 0))
        nsp_logits = tf.matmul(pooled, tf.cast(self.nsp_weights, pooled.dtype), transpose_b=True)
        nsp_logits = nsp_logits + tf.cast(self.nsp_bias, pooled.dtype)
        return {"mlm_logits": tf.cast(mlm_logits, tf.float32), "nsp_logits": tf.cast(nsp_logits, tf.float32)}


def pretraining_loss(outputs: Mapping[str, tf.Tensor], features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Google's pretraining loss: weighted mean MLM cross-entropy over real masked
    positions plus mean NSP cross-entropy. Also returns accuracies for progress.json."""
    ids = tf.cast(features["masked_lm_ids"], tf.int32)
    weights = tf.cast(features["masked_lm_weights"], tf.float32)
    mlm_xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=outputs["mlm_logits"])
    denom = tf.reduce_sum(weights) + 1e-5
    mlm_loss = tf.reduce_sum(mlm_xent * weights) / denom
    nsp_labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
    nsp_loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=nsp_labels, logits=outputs["nsp_logits"]))
    mlm_hit = tf.cast(tf.equal(tf.argmax(outputs["mlm_logits"], -1, output_type=tf.int32), ids), tf.float32)
    nsp_hit = tf.cast(tf.equal(tf.argmax(outputs["nsp_logits"], -1, output_type=tf.int32), nsp_labels), tf.float32)
    return {
        "loss": mlm_loss + nsp_loss,
        "mlm_loss": mlm_loss,
        "nsp_loss": nsp_loss,
        "mlm_accuracy": tf.reduce_sum(mlm_hit * weights) / denom,
        "nsp_accuracy": tf.reduce_mean(nsp_hit),
    }
