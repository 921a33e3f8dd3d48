"""Adam with decoupled weight decay, as in the original BERT paper's optimizer."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from bert_trainer.optim.base import SlotOptimizer


class AdamW(SlotOptimizer):
    """Google BERT's AdamWeightDecay: weight decay added to the update (not the
    gradient) and skipped for LayerNorm/bias. Google's version has no bias
    correction (the default, ``--noadam_bias_correction``); ``bias_correction=True``
    gives textbook AdamW (torch.optim.AdamW's update).

    Each variable's Adam part is TensorFlow's fused ResourceApplyAdam kernel: one
    multi-threaded pass over weight, gradient and slots instead of a dozen
    elementwise ops, each writing a weight-sized temporary. The kernel computes
    ``w -= lr * sqrt(1-b2p)/(1-b1p) * m/(sqrt(v)+eps)`` from the beta powers it is
    given. Without correction they are 0, so its step size is exactly ``lr``. With
    correction they are ``beta^t`` and ``eps`` is passed times ``sqrt(1-beta_2^t)``,
    which makes the step exactly ``lr * m_hat/(sqrt(v_hat)+eps)`` (the kernel alone
    would put eps inside the correction, Kingma & Ba's "eps-hat" form). The weight
    decay is applied first, from the same pre-update weight and uncorrected, so
    ``w -= lr * (adam + wd*w)`` holds as written. (The kernel forms ``1 - beta`` in
    fp32, so beta_2 = 0.999 acts as 0.99900001: moments 1e-5 apart, far below the
    noise of a fine-tuning run.)
    """

    def __init__(self, *args, bias_correction: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bias_correction = bias_correction

    def _apply(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable], global_step: tf.Tensor) -> None:
        self.iterations.assign_add(1)
        lr = self.learning_rate(global_step)
        if self.bias_correction:
            t = tf.cast(self.iterations, tf.float32)  # updates applied, this one included (skipped steps do not count)
            beta1_power, beta2_power = tf.pow(self.beta_1, t), tf.pow(self.beta_2, t)
            epsilon = self.epsilon * tf.sqrt(1.0 - beta2_power)
        else:
            beta1_power, beta2_power, epsilon = tf.constant(0.0), tf.constant(0.0), tf.constant(self.epsilon)
        for i, (g, w) in enumerate(zip(grads, variables)):
            if self.decay_mask[i]:
                w.assign_sub((lr * self.weight_decay_rate) * w)
            tf.raw_ops.ResourceApplyAdam(var=w.handle, m=self.m[i].handle, v=self.v[i].handle,
                                         beta1_power=beta1_power, beta2_power=beta2_power, lr=lr,
                                         beta1=tf.constant(self.beta_1), beta2=tf.constant(self.beta_2),
                                         epsilon=epsilon, grad=tf.cast(g, tf.float32))
