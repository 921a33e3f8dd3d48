"""Optimizers (NVLAMB, AdamW), the BERT LR schedule and fp16 loss scaling."""

from bert_trainer.optim.adam import AdamW
from bert_trainer.optim.lamb import NVLamb
from bert_trainer.optim.loss_scale import DynamicLossScale, all_finite
from bert_trainer.optim.schedule import WarmupPolyDecay


def create_optimizer(name: str, named_vars, schedule, *, beta_1: float, beta_2: float, epsilon: float,
                     weight_decay_rate: float, adam_bias_correction: bool = False):
    """``name`` is the CLI's --optimizer value: "lamb" (NVLAMB, always bias-corrected) or "adam" (AdamW,
    bias-corrected only with ``adam_bias_correction``: Google's AdamWeightDecay has none)."""
    if name == "adam":
        return AdamW(named_vars, schedule, beta_1, beta_2, epsilon, weight_decay_rate,
                     bias_correction=adam_bias_correction)
    if name == "lamb":
        return NVLamb(named_vars, schedule, beta_1, beta_2, epsilon, weight_decay_rate)
    raise ValueError(f"unknown optimizer {name!r}")


__all__ = ["AdamW", "DynamicLossScale", "NVLamb", "WarmupPolyDecay", "all_finite", "create_optimizer"]
