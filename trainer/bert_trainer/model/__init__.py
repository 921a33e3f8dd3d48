"""BERT model: config, layers, pretraining heads and checkpoint import.

The TensorFlow-backed names are loaded lazily so that the CLI can validate a
config (bert_trainer.model.config) in milliseconds, before TensorFlow is imported.
"""

from bert_trainer.model.config import PRESETS, BertConfig, ConfigError

__all__ = ["BertConfig", "BertEncoder", "BertPretrainer", "ConfigError", "PRESETS", "pretraining_loss"]


def __getattr__(name: str):
    if name in ("BertEncoder", "BertPretrainer", "pretraining_loss"):
        from bert_trainer.model import bert  # noqa: PLC0415

        return getattr(bert, name)
    raise AttributeError(name)
