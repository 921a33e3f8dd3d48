"""Adam with decoupled weight decay, as in the original BERT paper's optimizer."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from bert_trainer.optim.base import SlotOptimizer


class AdamW(SlotOptimizer):
    """Google BERT's AdamWeightDecay: weight decay added to the update (not the
    gradient) and skipped for LayerNorm/bias. Google's version has no bias
    correction; ``bias_correction=True`` gives textbook AdamW.

    Without bias correction each variable's Adam part is TensorFlow's fused
    ResourceApplyAdam kernel (beta powers 0, so its step size is exactly ``lr``):
    one multi-threaded pass over weight, gradient and slots instead of a dozen
    elementwise ops, each writing a weight-sized temporary. The weight decay is
    applied first, from the same pre-update weight, so
    ``w -= lr * (m/(sqrt(v)+eps) + wd*w)`` holds as written. (The kernel forms
    ``1 - beta`` in fp32, so beta_2 = 0.999 acts as 0.99900001: moments 1e-5 apart,
    far below the noise of a fine-tuning run.)
    """

    def __init__(self, *args, bias_correction: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bias_correction = bias_correction

    def _apply(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable], global_step: tf.Tensor) -> None:
        self.iterations.assign_add(1)
        lr = self.learning_rate(global_step)
        if not self.bias_correction:
            for i, (g, w) in enumerate(zip(grads, variables)):
                if self.decay_mask[i]:
                    w.assign_sub((lr * self.weight_decay_rate) * w)
                tf.raw_ops.ResourceApplyAdam(var=w.handle, m=self.m[i].handle, v=self.v[i].handle,
                                             beta1_power=tf.constant(0.0), beta2_power=tf.constant(0.0), lr=lr,
                                             beta1=tf.constant(self.beta_1), beta2=tf.constant(self.beta_2),
                                             epsilon=tf.constant(self.epsilon), grad=tf.cast(g, tf.float32))
            return
        t = tf.cast(self.iterations, tf.float32)
        bc1 = 1.0 - tf.pow(self.beta_1, t)
        bc2 = 1.0 - tf.pow(self.beta_2, t)
        for i, (g, w) in enumerate(zip(grads, variables)):
            g = tf.cast(g, tf.float32)
            m = self.m[i].assign(self.beta_1 * self.m[i] + (1.0 - self.beta_1) * g)
            v = self.v[i].assign(self.beta_2 * self.v[i] + (1.0 - self.beta_2) * tf.square(g))
            update = (m / bc1) / (tf.sqrt(v / bc2) + self.epsilon)
            if self.decay_mask[i]:
                update += self.weight_decay_rate * w
            w.assign_sub(lr * update)
