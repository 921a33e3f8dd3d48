"""Flag groups every trainer subcommand shares, declared once so pretraining and fine-tuning cannot drift.

Names and defaults are NVIDIA's (run_pretraining.py, run_squad.py, run_classifier.py), which
is what the operator renders (bert_operator.render.command).
"""

from __future__ import annotations

import argparse


def non_negative(text: str) -> float:
    """A finite number >= 0 (argparse names the flag and exits 2 on anything else)."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def bool_flag(parser: argparse.ArgumentParser, name: str, help_: str) -> None:
    parser.add_argument(f"--{name}", action="store_true", default=False, help=help_)


def add_model_flags(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Exactly one way to name the architecture (at most one, where not `required`)."""
    model = parser.add_mutually_exclusive_group(required=required)
    model.add_argument("--bert_model", choices=["base", "large"], help="Google's uncased preset")
    model.add_argument("--bert_config_json", help="bert_config as an inline JSON object")
    model.add_argument("--bert_config_file", help="bert_config.json: local path or s3:// URI")


def add_optimizer_flags(parser: argparse.ArgumentParser, *, optimizer: str) -> None:
    """Optimizer, its hyperparameters, precision and XLA; `optimizer` is the task's default (lamb or adam)."""
    parser.add_argument("--optimizer", choices=["lamb", "adam"], default=optimizer)
    parser.add_argument("--weight_decay_rate", type=float, default=0.01)
    parser.add_argument("--beta_1", type=float, default=0.9)
    parser.add_argument("--beta_2", type=float, default=0.999)
    parser.add_argument("--epsilon", type=float, default=1e-6)
    parser.add_argument("--clip_norm", type=non_negative, default=1.0,
                        help="clip each step's gradient to this global norm before the update, as Google's and "
                             "NVIDIA's BERT do (default 1.0); 0 turns clipping off")
    # absl's spelling of a boolean (--flag / --noflag), as Google's and NVIDIA's TensorFlow scripts take it.
    correction = parser.add_mutually_exclusive_group()
    correction.add_argument("--adam_bias_correction", dest="adam_bias_correction", action="store_true", default=False,
                            help="--optimizer adam: divide Adam's moments by 1 - beta^t (torch.optim.AdamW's update)")
    correction.add_argument("--noadam_bias_correction", dest="adam_bias_correction", action="store_false",
                            help="--optimizer adam: no bias correction, as Google's AdamWeightDecayOptimizer that BERT "
                                 "was trained with (the default); NVLAMB always corrects")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    bool_flag(parser, "use_xla", "compile the training step with XLA (jit_compile)")
