"""Shared machinery for optimizers that work on raw, named fp32 tf.Variables.

Our own optimizers (rather than keras.optimizers) because Horovod and the custom
loop hand us plain tf.Variables, NVLAMB is not what keras.optimizers.Lamb does, and
slot variables must be ordinary tracked state so tf.train.Checkpoint can resume them.

The update is written as one loop over the variables, which is only ever run while a
graph is traced: inside the engine's compiled step it is part of that graph, and an
eager call goes through one tf.function (:meth:`SlotOptimizer.apply_gradients`), so a
step never dispatches one Python-level op per variable (a MiniLM AdamW step is ~1,800
ops: eagerly they cost more than the whole compiled update).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import tensorflow as tf

# Google BERT's exclusion list for weight decay (and LAMB's layer adaptation).
DEFAULT_EXCLUDE = ("LayerNorm", "layer_norm", "bias")


def is_excluded(name: str, patterns: Sequence[str]) -> bool:
    """True if weight decay must not apply to the variable called ``name``."""
    return any(re.search(p, name) for p in patterns)


class SlotOptimizer(tf.Module):
    """Holds first/second moment slots for each variable plus an update counter."""

    def __init__(self, named_vars: dict[str, tf.Variable], learning_rate: Callable[[tf.Tensor], tf.Tensor],
                 beta_1: float, beta_2: float, epsilon: float, weight_decay_rate: float,
                 exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE) -> None:
        super().__init__()
        self.names = list(named_vars)
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.weight_decay_rate = float(weight_decay_rate)
        self.decay_mask = [not is_excluded(n, exclude_from_weight_decay) for n in self.names]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        vars_ = list(named_vars.values())
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"m_{i}") for i, v in enumerate(vars_)]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"v_{i}") for i, v in enumerate(vars_)]
        self._compiled = tf.function(self._apply, reduce_retracing=True, autograph=False)  # graph code as written

    def apply_gradients(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable],
                        global_step: tf.Tensor) -> None:
        """Apply one update; ``global_step`` drives the learning-rate schedule.

        Inside a traced function the update joins that graph; called eagerly it runs as one
        compiled function (traced once: the variables are arguments, matched by shape and dtype).
        """
        if tf.executing_eagerly():
            self._compiled(list(grads), list(variables), tf.cast(global_step, tf.int64))
        else:
            self._apply(grads, variables, global_step)

    def _apply(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable], global_step: tf.Tensor) -> None:
        """The update itself, written for tracing (a Python loop over the variables builds one graph)."""
        raise NotImplementedError
