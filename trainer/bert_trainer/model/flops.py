"""Analytic model FLOPs of one BERT pretraining step, for model-FLOPs utilisation (MFU).

MFU = achieved model FLOPs/s / the accelerator's peak FLOPs/s, where "model FLOPs"
are the multiply-adds the model needs (2 FLOPs each), independent of how an
implementation schedules them: no recomputation, no elementwise work (softmax, GELU,
LayerNorm, dropout, optimizer), no embedding gathers. Per sequence of ``s`` tokens with
``P`` masked positions, hidden ``h``, intermediate ``i``, ``L`` layers, vocabulary ``V``:

    forward = 2 * s * L * (4*h*h + 2*h*i)      Q, K, V, output projections and the two FFN matmuls
            + 4 * s * s * h * L                 Q K^T and probs V (every head together spans h)
            + 2 * P * (h*h + h*V)               MLM transform and tied decoder, at the masked positions only
            + 2 * h*h + 2 * 2*h                 pooler and NSP classifier, on the [CLS] token

    train = 3 * forward                         backward = gradients w.r.t. activations and weights (2x)

so ``train = 6 * s * N_layers + 12 * L * s^2 * h + heads``, with ``N_layers = L * (4h^2 + 2hi)``
the encoder's matmul parameters. Biases are left out (one add per output, under 0.1%).
For BERT-Large at s=128, P=20 this is 80.2 GFLOPs forward, 240.6 GFLOPs per trained
sequence; the usual rough ``2 * 334M params * 128 tokens`` = 85.5 GFLOPs forward counts the
30522x1024 embedding as a matmul at every token, which the MLM head does at P=20 only.
"""

from __future__ import annotations

from bert_trainer.model.config import BertConfig


def encoder_matmul_params(cfg: BertConfig) -> int:
    """Weights of the encoder layers' matmuls: per layer Q, K, V, output (h x h each) and the FFN (h x i, i x h)."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    return cfg.num_hidden_layers * (4 * h * h + 2 * h * i)


def forward_flops_per_sequence(cfg: BertConfig, seq_len: int, max_predictions: int) -> int:
    """Model FLOPs of one forward pass over one sequence (formula in the module docstring)."""
    h, vocab = cfg.hidden_size, cfg.vocab_size
    encoder = 2 * seq_len * encoder_matmul_params(cfg)
    attention = 4 * seq_len * seq_len * h * cfg.num_hidden_layers
    mlm_head = 2 * max_predictions * (h * h + h * vocab)
    cls_heads = 2 * h * h + 2 * 2 * h
    return encoder + attention + mlm_head + cls_heads


def train_flops_per_sequence(cfg: BertConfig, seq_len: int, max_predictions: int) -> int:
    """Forward plus backward: backward computes two matmuls (activation and weight gradients) per forward one."""
    return 3 * forward_flops_per_sequence(cfg, seq_len, max_predictions)


def mfu(seq_per_s: float, flops_per_seq: float, peak_flops_per_s: float) -> float:
    """Model-FLOPs utilisation: the fraction of the peak the model's own FLOPs reach."""
    if peak_flops_per_s <= 0:
        raise ValueError("peak FLOPs/s must be positive")
    return seq_per_s * flops_per_seq / peak_flops_per_s
