"""Optimizers (NVLAMB, AdamW), the BERT LR schedule and fp16 loss scaling."""

from bert_trainer.optim.adam import AdamW
from bert_trainer.optim.lamb import NVLamb
from bert_trainer.optim.loss_scale import DynamicLossScale, all_finite
from bert_trainer.optim.schedule import WarmupPolyDecay


def create_optimizer(name: str, named_vars, schedule, *, beta_1: float, beta_2: float, epsilon: float,
                     weight_decay_rate: float):
    """``name`` is the CLI's --optimizer value: "lamb" (NVLAMB) or "adam" (AdamW)."""
    cls = {"lamb": NVLamb, "adam": AdamW}.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}")
    return cls(named_vars, schedule, beta_1, beta_2, epsilon, weight_decay_rate)


__all__ = ["AdamW", "DynamicLossScale", "NVLamb", "WarmupPolyDecay", "all_finite", "create_optimizer"]
