"""Adam with decoupled weight decay, as in the original BERT paper's optimizer."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from bert_trainer.optim.base import SlotOptimizer


class AdamW(SlotOptimizer):
    """Google BERT's AdamWeightDecay: weight decay added to the update (not the
    gradient) and skipped for LayerNorm/bias. Google's version has no bias
    correction; ``bias_correction=True`` gives textbook AdamW."""

    def __init__(self, *args, bias_correction: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bias_correction = bias_correction

    def apply_gradients(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable],
                        global_step: tf.Tensor) -> None:
        self.iterations.assign_add(1)
        lr = self.learning_rate(global_step)
        t = tf.cast(self.iterations, tf.float32)
        bc1 = 1.0 - tf.pow(self.beta_1, t) if self.bias_correction else 1.0
        bc2 = 1.0 - tf.pow(self.beta_2, t) if self.bias_correction else 1.0
        for i, (g, w) in enumerate(zip(grads, variables)):
            g = tf.cast(g, tf.float32)
            m = self.m[i].assign(self.beta_1 * self.m[i] + (1.0 - self.beta_1) * g)
            v = self.v[i].assign(self.beta_2 * self.v[i] + (1.0 - self.beta_2) * tf.square(g))
            update = (m / bc1) / (tf.sqrt(v / bc2) + self.epsilon)
            if self.decay_mask[i]:
                update += self.weight_decay_rate * w
            w.assign_sub(lr * update)
