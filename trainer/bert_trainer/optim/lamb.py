"""NVLAMB: NVIDIA's LAMB variant used by the BERT recipe.

Differences from ``keras.optimizers.Lamb``: the gradients of all layers are first
divided by their *global* L2 norm (pre-normalization, which makes the update
independent of the loss scale and of the global batch size), Adam moments get bias
correction, and weight decay plus the layer-wise trust ratio skip LayerNorm and
bias parameters.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from bert_trainer.optim.base import SlotOptimizer


class NVLamb(SlotOptimizer):
    """update = m̂/(sqrt(v̂)+eps) + wd*w;  w -= lr * (||w||/||update||) * update."""

    def _apply(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable], global_step: tf.Tensor) -> None:
        grads = [tf.cast(g, tf.float32) for g in grads]
        global_norm = tf.linalg.global_norm(grads)
        # Pre-normalize by the global norm; when the norm is below 1 leave gradients
        # alone, as NVIDIA's fused kernel does (max_grad_norm=1), so tiny gradients near
        # convergence are not blown up.
        scale = 1.0 / tf.maximum(global_norm, 1.0)
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        lr = self.learning_rate(global_step)
        bc1 = 1.0 - tf.pow(self.beta_1, t)
        bc2 = 1.0 - tf.pow(self.beta_2, t)
        for i, (g, w) in enumerate(zip(grads, variables)):
            g = g * scale
            m = self.m[i].assign(self.beta_1 * self.m[i] + (1.0 - self.beta_1) * g)
            v = self.v[i].assign(self.beta_2 * self.v[i] + (1.0 - self.beta_2) * tf.square(g))
            update = (m / bc1) / (tf.sqrt(v / bc2) + self.epsilon)
            if self.decay_mask[i]:
                update += self.weight_decay_rate * w
                w_norm = tf.norm(w)
                u_norm = tf.norm(update)
                ratio = tf.where((w_norm > 0.0) & (u_norm > 0.0), w_norm / u_norm, 1.0)
            else:
                ratio = 1.0
            w.assign_sub(lr * ratio * update)
