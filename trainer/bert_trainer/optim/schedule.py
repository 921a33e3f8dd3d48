"""BERT's learning-rate schedule: linear warmup, then polynomial decay to zero."""

from __future__ import annotations

import tensorflow as tf


class WarmupPolyDecay:
    """lr(step) = base * step/warmup during warmup, else base * (1 - step/total)^power.

    Same shape as Google's and NVIDIA's create_optimizer (power 1.0 = linear decay);
    the decay is computed on the global step, so warmup steps also count toward it.
    """

    def __init__(self, learning_rate: float, num_train_steps: int, num_warmup_steps: int,
                 power: float = 1.0, end_learning_rate: float = 0.0) -> None:
        self.learning_rate = float(learning_rate)
        self.num_train_steps = max(int(num_train_steps), 1)
        self.num_warmup_steps = int(num_warmup_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        frac = tf.minimum(step, float(self.num_train_steps)) / float(self.num_train_steps)
        span = self.learning_rate - self.end_learning_rate
        decayed = span * tf.pow(1.0 - frac, self.power) + self.end_learning_rate
        if self.num_warmup_steps <= 0:
            return decayed
        warm = self.learning_rate * step / float(self.num_warmup_steps)
        return tf.where(step < float(self.num_warmup_steps), warm, decayed)
