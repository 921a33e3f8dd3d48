"""BERT model configuration in Google's ``bert_config.json`` vocabulary.

One dataclass serves Google's configs, Hugging Face ``config.json`` files (same
field names plus extras we ignore) and the named presets the operator exposes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from bert_common.bert_config import ACTIVATIONS, BERT_PRESETS, FIELDS_BY_NAME, problems

# Google's released uncased BERT configs (uncased_L-12_H-768_A-12, uncased_L-24_H-1024_A-16): one table for
# the whole project, in bert_common (standard library only, installed in both images).
PRESETS: dict[str, dict[str, Any]] = BERT_PRESETS

SUPPORTED_ACTIVATIONS = ACTIVATIONS


def _default(name: str) -> Any:
    return FIELDS_BY_NAME[name].default


class ConfigError(ValueError):
    """A bert_config is malformed; the message names the offending field."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of the encoder; field names match Google's bert_config.json.

    The fields, their defaults and the values each may take are bert_common.bert_config's (the API's
    spec.model.config is derived from the same table); tests/test_packages.py holds this list to it."""

    vocab_size: int
    hidden_size: int = _default("hidden_size")
    num_hidden_layers: int = _default("num_hidden_layers")
    num_attention_heads: int = _default("num_attention_heads")
    intermediate_size: int = _default("intermediate_size")
    hidden_act: str = _default("hidden_act")
    hidden_dropout_prob: float = _default("hidden_dropout_prob")
    attention_probs_dropout_prob: float = _default("attention_probs_dropout_prob")
    max_position_embeddings: int = _default("max_position_embeddings")
    type_vocab_size: int = _default("type_vocab_size")
    initializer_range: float = _default("initializer_range")
    layer_norm_eps: float = _default("layer_norm_eps")

    def __post_init__(self) -> None:
        found = problems(dataclasses.asdict(self))
        if found:
            raise ConfigError("; ".join(found))

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
