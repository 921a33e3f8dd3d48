"""Dynamic loss scaling for fp16 training.

The loss is multiplied by ``scale`` before backprop so small fp16 gradients do not
flush to zero; gradients are divided back before the optimizer. On inf/NaN
gradients the step is skipped and the scale halves; after ``growth_interval`` clean
steps it doubles. State is tf.Variables so checkpoints resume it exactly.
"""

from __future__ import annotations

import tensorflow as tf


class DynamicLossScale(tf.Module):
    def __init__(self, initial_scale: float = 2.0 ** 15, growth_interval: int = 2000,
                 factor: float = 2.0, min_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = tf.Variable(float(initial_scale), dtype=tf.float32, trainable=False, name="loss_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")
        self.growth_interval = int(growth_interval)
        self.factor = float(factor)
        self.min_scale = float(min_scale)

    def update(self, grads_finite: tf.Tensor) -> None:
        """Grow after a run of finite steps; shrink (and reset the run) on overflow.
        Written with tf.where, not tf.cond, so it traces cleanly inside tf.function/XLA."""
        grow = grads_finite & (self.good_steps + 1 >= self.growth_interval)
        new_scale = tf.where(grads_finite,
                             tf.where(grow, self.scale * self.factor, self.scale),
                             tf.maximum(self.scale / self.factor, self.min_scale))
        new_good = tf.where(grads_finite & tf.logical_not(grow), self.good_steps + 1, tf.constant(0, tf.int64))
        self.scale.assign(new_scale)
        self.good_steps.assign(new_good)


def all_finite(grads) -> tf.Tensor:
    """True when every gradient value is finite (one reduction over all tensors)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
