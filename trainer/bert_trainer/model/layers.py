"""Transformer building blocks on plain ``tf.Module``/``tf.Variable``.

Why not Keras layers: Horovod's TensorFlow API, our NVLAMB optimizer and the
checkpoint importers all want the raw fp32 ``tf.Variable`` objects, and Keras 3
wraps them. Each variable carries its Google TF1 checkpoint name (``gname``) so
importing Google or Hugging Face weights is a name lookup, not a graph walk.

Mixed precision: variables stay fp32 ("master weights"); every layer casts them
to the compute dtype of its input. LayerNorm and softmax run in fp32.
"""

from __future__ import annotations

import math

import tensorflow as tf

from bert_common.bert_config import ACTIVATION_FUNCTIONS


def truncated_normal(shape: list[int], stddev: float, rng: tf.random.Generator) -> tf.Tensor:
    """Google BERT's initializer: truncated normal with the config's initializer_range.
    A seeded generator (not the global seed) makes two builds with one seed identical."""
    return rng.truncated_normal(shape, stddev=stddev)


def activation(name: str):
    """Map bert_config's hidden_act to a function, through bert_common's table of spellings (the one the API's
    enum is made of): "gelu" is the exact erf form (what Hugging Face uses); "gelu_new"/"gelu_tanh"/"gelu_fast"
    the tanh approximation."""
    function = ACTIVATION_FUNCTIONS.get(name)
    if function == "gelu":
        return lambda x: tf.nn.gelu(x, approximate=False)
    if function == "gelu_tanh":
        return lambda x: tf.nn.gelu(x, approximate=True)
    if function == "relu":
        return tf.nn.relu
    if function == "tanh":
        return tf.math.tanh
    if function == "silu":
        return tf.nn.silu
    raise ValueError(f"unsupported activation {name}")


def named_variable(initial: tf.Tensor, gname: str) -> tf.Variable:
    """A trainable fp32 variable tagged with its Google checkpoint name."""
    var = tf.Variable(initial, trainable=True, dtype=tf.float32, name=gname.replace("/", "__"))
    var.gname = gname
    return var


class Dense(tf.Module):
    """y = x W + b with W stored [in, out] as in Google's checkpoints.

    Inputs of any rank are flattened to a [tokens, in] matrix first. A rank-3 input
    times the rank-2 kernel would be a broadcasting BatchMatMulV2, whose gradient
    computes one kernel gradient per batch row ([B, in, out]) and then sums them: under
    XLA on CPU that was the largest cost of a BERT-Base step. One 2-D matmul has a
    2-D gradient (x^T dy) and is the same arithmetic.
    """

    def __init__(self, n_in: int, n_out: int, gname: str, stddev: float, rng: tf.random.Generator) -> None:
        super().__init__()
        self.kernel = named_variable(truncated_normal([n_in, n_out], stddev, rng), f"{gname}/kernel")
        self.bias = named_variable(tf.zeros([n_out]), f"{gname}/bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        kernel = tf.cast(self.kernel, x.dtype)
        if x.shape.rank == 2:
            return tf.matmul(x, kernel) + tf.cast(self.bias, x.dtype)
        lead = tf.shape(x)[:-1]
        y = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), kernel) + tf.cast(self.bias, x.dtype)
        return tf.reshape(y, tf.concat([lead, [kernel.shape[1]]], 0))


class LayerNorm(tf.Module):
    """LayerNorm computed in fp32 (fp16 variance overflows), returned in the input dtype."""

    def __init__(self, dim: int, gname: str, eps: float) -> None:
        super().__init__()
        self.gamma = named_variable(tf.ones([dim]), f"{gname}/gamma")
        self.beta = named_variable(tf.zeros([dim]), f"{gname}/beta")
        self.eps = eps

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x32 = tf.cast(x, tf.float32)
        mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
        y = (x32 - mean) * tf.math.rsqrt(var + self.eps) * self.gamma + self.beta
        return tf.cast(y, x.dtype)


def dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    if not training or rate <= 0.0:
        return x
    return tf.nn.dropout(x, rate=rate)


class SelfAttention(tf.Module):
    """Multi-head self-attention + output projection + residual LayerNorm (BERT's "attention" block)."""

    def __init__(self, cfg, prefix: str, rng: tf.random.Generator) -> None:
        super().__init__()
        h, std = cfg.hidden_size, cfg.initializer_range
        self.num_heads, self.head_size = cfg.num_attention_heads, cfg.head_size
        self.query = Dense(h, h, f"{prefix}/self/query", std, rng)
        self.key = Dense(h, h, f"{prefix}/self/key", std, rng)
        self.value = Dense(h, h, f"{prefix}/self/value", std, rng)
        self.output = Dense(h, h, f"{prefix}/output/dense", std, rng)
        self.norm = LayerNorm(h, f"{prefix}/output/LayerNorm", cfg.layer_norm_eps)
        self.attn_drop = cfg.attention_probs_dropout_prob
        self.hidden_drop = cfg.hidden_dropout_prob

    def _split(self, x: tf.Tensor) -> tf.Tensor:
        b, s = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [b, s, self.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])

    def __call__(self, x: tf.Tensor, mask_bias: tf.Tensor, training: bool) -> tf.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True) * tf.cast(1.0 / math.sqrt(self.head_size), q.dtype)
        probs = tf.nn.softmax(tf.cast(scores, tf.float32) + mask_bias, axis=-1)
        probs = dropout(tf.cast(probs, x.dtype), self.attn_drop, training)
        ctx = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
        ctx = tf.reshape(ctx, tf.shape(x))
        out = dropout(self.output(ctx), self.hidden_drop, training)
        return self.norm(out + x)


class TransformerLayer(tf.Module):
    """One post-LN BERT encoder layer: attention block, then GELU feed-forward block."""

    def __init__(self, cfg, index: int, rng: tf.random.Generator) -> None:
        super().__init__()
        prefix = f"bert/encoder/layer_{index}"
        h, std = cfg.hidden_size, cfg.initializer_range
        self.attention = SelfAttention(cfg, f"{prefix}/attention", rng)
        self.intermediate = Dense(h, cfg.intermediate_size, f"{prefix}/intermediate/dense", std, rng)
        self.output = Dense(cfg.intermediate_size, h, f"{prefix}/output/dense", std, rng)
        self.norm = LayerNorm(h, f"{prefix}/output/LayerNorm", cfg.layer_norm_eps)
        self.act = activation(cfg.hidden_act)
        self.hidden_drop = cfg.hidden_dropout_prob

    def __call__(self, x: tf.Tensor, mask_bias: tf.Tensor, training: bool) -> tf.Tensor:
        x = self.attention(x, mask_bias, training)
        y = self.output(self.act(self.intermediate(x)))
        y = dropout(y, self.hidden_drop, training)
        return self.norm(y + x)
