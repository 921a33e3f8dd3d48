"""The BERT config's fields, once: names, types, defaults, bounds, allowed activations and the presets.

Two models read a ``bert_config.json``: the API's ``BertConfig`` (pydantic, what ``spec.model.config`` accepts and
the CRD declares) and the trainer's ``BertConfig`` (a dataclass, what builds the network, also from a Hugging Face
``config.json``). Each declared its own defaults and limits, and they drifted (the API allowed 5 activations, the
trainer 8); both are now derived from :data:`FIELDS`, and tests/test_packages.py holds them to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal, Mapping, get_args

#: The ``hidden_act`` spellings the trainer implements: Google's and Hugging Face's names (transformers' ACT2FN)
#: for the functions in :data:`ACTIVATION_FUNCTIONS`, plus ``gelu_tanh`` (this project's name for the tanh
#: approximation, exported to Hugging Face as ``gelu_new``). Google's and NVIDIA's configs use ``gelu``.
Activation = Literal["gelu", "gelu_new", "gelu_tanh", "gelu_fast", "relu", "tanh", "swish", "silu"]
ACTIVATIONS: Final[tuple[str, ...]] = get_args(Activation)
#: Spelling -> the function it names: ``gelu`` is the exact erf form (Google's checkpoints and Hugging Face's
#: ``gelu``), ``gelu_new``/``gelu_fast`` are transformers' names for the tanh approximation, ``swish`` is ``silu``.
ACTIVATION_FUNCTIONS: Final[dict[str, str]] = {
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "relu": "relu", "tanh": "tanh", "swish": "silu", "silu": "silu",
}


@dataclass(frozen=True)
class ConfigField:
    """One field of bert_config.json: its type, default and the values it may take.

    ``in_api`` is False for a field the trainer reads (from a Hugging Face config.json) but Google's
    bert_config.json, and so ``spec.model.config``, does not have.
    """

    name: str
    type: type
    default: Any
    description: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    in_api: bool = True

    def bounds(self) -> dict[str, float]:
        """The bounds that are set, by their pydantic/JSON Schema names (ge, gt, le, lt)."""
        return {k: v for k, v in (("ge", self.ge), ("gt", self.gt), ("le", self.le), ("lt", self.lt)) if v is not None}

    def problem(self, value: object) -> str | None:
        """Why `value` cannot be this field (naming the field), or None. An int is a float (JSON has one number
        type); a bool is neither, and a float is not an int."""
        kinds: tuple[type, ...] = (int, float) if self.type is float else (self.type,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"{self.name} must be {'a number' if self.type is float else self.type.__name__}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} must be finite, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} not one of {self.choices}"
        for name, limit in self.bounds().items():
            assert isinstance(value, (int, float))
            ok = {"ge": value >= limit, "gt": value > limit, "le": value <= limit, "lt": value < limit}[name]
            if not ok:
                sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[name]
                return f"{self.name} must be {sign} {limit:g}, got {value!r}"
        return None


#: The fields in bert_config.json's order. Defaults are Google's BERT-Base (uncased_L-12_H-768_A-12); the
#: descriptions are what `kubectl explain` and docs/jobs.md show for spec.model.config.
FIELDS: Final[tuple[ConfigField, ...]] = (
    ConfigField("vocab_size", int, 30522, "Size of the WordPiece vocabulary. Default 30522 (uncased).", ge=1),
    ConfigField("hidden_size", int, 768, "Width of the encoder layers and the pooler. Default 768.", ge=1),
    ConfigField("num_hidden_layers", int, 12, "Number of transformer layers. Default 12.", ge=1, le=128),
    ConfigField("num_attention_heads", int, 12, "Attention heads per layer; must divide hiddenSize. Default 12.", ge=1),
    ConfigField("intermediate_size", int, 3072, "Width of the feed-forward layer. Default 3072.", ge=1),
    ConfigField(
        "hidden_act", str, "gelu",
        "Activation of the feed-forward layer: gelu (exact), gelu_new, gelu_tanh or gelu_fast (the tanh "
        "approximation), relu, tanh, swish or silu. Default gelu.",
        choices=ACTIVATIONS,
    ),
    ConfigField("hidden_dropout_prob", float, 0.1, "Dropout on embeddings, encoder and pooler outputs. Default 0.1.",
                ge=0.0, lt=1.0),
    ConfigField("attention_probs_dropout_prob", float, 0.1, "Dropout on attention probabilities. Default 0.1.",
                ge=0.0, lt=1.0),
    ConfigField("max_position_embeddings", int, 512,
                "Longest sequence the model can take; bounds every maxSeqLength. Default 512.", ge=1),
    ConfigField("type_vocab_size", int, 2, "Number of segment (token type) ids. Default 2.", ge=1),
    ConfigField("initializer_range", float, 0.02, "Stddev of the truncated-normal initializer. Default 0.02.", gt=0.0),
    ConfigField("layer_norm_eps", float, 1e-12,
                "Epsilon of every LayerNorm (Hugging Face's config.json; Google's has none). Default 1e-12.",
                gt=0.0, in_api=False),
)
FIELDS_BY_NAME: Final[dict[str, ConfigField]] = {field.name: field for field in FIELDS}
#: The fields of Google's bert_config.json, which spec.model.config takes.
API_FIELDS: Final[tuple[ConfigField, ...]] = tuple(field for field in FIELDS if field.in_api)


def problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with a complete set of field values, each naming its field; empty when nothing is."""
    found = [problem for field in FIELDS if field.name in values if (problem := field.problem(values[field.name]))]
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if not found and isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        found.append(f"hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
    return found


#: Google's released uncased BERT configurations (uncased_L-12_H-768_A-12 and uncased_L-24_H-1024_A-16), field
#: names as Google wrote them: the API's `preset: base | large` and the trainer's `--bert_model`.
_BASE: Final[dict[str, object]] = {field.name: field.default for field in API_FIELDS}
BERT_PRESETS: Final[dict[str, dict[str, object]]] = {
    "base": _BASE,
    "large": {**_BASE, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
