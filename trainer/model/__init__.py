"""BERT model: config, layers, pretraining heads and checkpoint import."""

from bert_trainer.model.bert import BertEncoder, BertPretrainer, pretraining_loss
from bert_trainer.model.config import PRESETS, BertConfig, ConfigError

__all__ = ["BertConfig", "BertEncoder", "BertPretrainer", "ConfigError", "PRESETS", "pretraining_loss"]
