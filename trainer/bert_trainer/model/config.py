"""BERT model configuration in Google's ``bert_config.json`` vocabulary.

One dataclass serves Google's configs, Hugging Face ``config.json`` files (same
field names plus extras we ignore) and the named presets the operator exposes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from bert_operator.api.presets import BERT_PRESETS

# Google's released uncased BERT configs (uncased_L-12_H-768_A-12, uncased_L-24_H-1024_A-16): one table for
# the whole project, kept with the API (a base dependency of both images, no TensorFlow or kopf in it).
PRESETS: dict[str, dict[str, Any]] = BERT_PRESETS

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_tanh", "gelu_fast", "relu", "tanh", "swish", "silu")


class ConfigError(ValueError):
    """A bert_config is malformed; the message names the offending field."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of the encoder; field names match Google's bert_config.json."""

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(f"hidden_act={self.hidden_act!r} not one of {SUPPORTED_ACTIVATIONS}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BertConfig":
        """Build from a Google or Hugging Face config dict; unknown keys are ignored
        because HF configs carry many unrelated fields (architectures, torch_dtype...)."""
        if not isinstance(data, Mapping):
            raise ConfigError("bert config must be a JSON object")
        if "vocab_size" not in data:
            raise ConfigError("bert config lacks required field 'vocab_size'")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong value types
            raise ConfigError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> "BertConfig":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc}") from exc

    @classmethod
    def preset(cls, name: str) -> "BertConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown bert_model {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict(PRESETS[name])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
