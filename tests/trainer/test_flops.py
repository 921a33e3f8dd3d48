"""The analytic FLOPs count behind bench/trainer_throughput.py's MFU figure."""

from __future__ import annotations

import pytest

from bert_trainer.model import BertConfig
from bert_trainer.model.flops import (
    encoder_matmul_params,
    forward_flops_per_sequence,
    mfu,
    train_flops_per_sequence,
)


def test_bert_large_seq128_by_hand():
    cfg = BertConfig.preset("large")
    h, i, layers, v, s, p = 1024, 4096, 24, 30522, 128, 20
    assert encoder_matmul_params(cfg) == layers * (4 * h * h + 2 * h * i) == 301_989_888
    by_hand = (2 * s * 301_989_888 + 4 * s * s * h * layers + 2 * p * (h * h + h * v) + 2 * h * h + 4 * h)
    assert forward_flops_per_sequence(cfg, s, p) == by_hand == 80_214_249_472
    assert train_flops_per_sequence(cfg, s, p) == 3 * by_hand


def test_bert_large_close_to_the_two_flops_per_param_per_token_rule():
    # The rule of thumb 2 * 334M params * 128 tokens (+ attention) counts the embedding as a matmul at every
    # token; ours applies the tied decoder at the 20 masked positions only, so it is a few percent lower.
    cfg = BertConfig.preset("large")
    rule = 2 * 334e6 * 128 + 4 * 128 * 128 * 1024 * 24
    assert 0.9 * rule < forward_flops_per_sequence(cfg, 128, 20) < rule


def test_matmul_params_are_the_models_layer_kernels(tiny_config):
    from bert_trainer.model import BertPretrainer

    model = BertPretrainer(tiny_config)
    kernels = [var for name, var in model.named_variables().items()
               if name.startswith("bert/encoder/") and name.endswith("/kernel")]
    assert sum(int(var.shape.num_elements()) for var in kernels) == encoder_matmul_params(tiny_config)


def test_mfu():
    assert mfu(1000.0, 240e9, 989e12) == pytest.approx(0.2427, abs=1e-4)
    with pytest.raises(ValueError):
        mfu(1.0, 1.0, 0.0)
