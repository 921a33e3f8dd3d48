"""A request's text, checked and tokenised as training tokenised it, and the model's logits turned into answers.

A request body is untrusted: it is checked before any of it is tokenised, and whatever is wrong is one
:class:`BadRequest` naming the field (``instances[2].sentence1``) and what is allowed, which the server answers
with 400. Bounds: at most MAX_INSTANCES instances, each text at most its field's MAX_CHARS characters, no field
beyond the model's. Within those, a text longer than the model's ``max_seq_length`` tokens is truncated as the
fine-tuning task truncated it (longest first for a pair; a SQuAD context is read in overlapping windows).
TensorFlow-free: the transformer's image needs tokenizers and numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from bert_trainer.finetune.squad_data import Feature, SquadExample, best_span, make_features
from bert_trainer.finetune.tokenization import encode_pairs
from bert_trainer.serve.manifest import Manifest

MAX_INSTANCES = 64
MAX_CHARS = {"sentence": 8192, "sentence1": 8192, "sentence2": 8192, "question": 2048, "context": 32768}
#: GLUE rows are cut to their longest row rounded up to this many tokens (exact for the [CLS] classifier, as the
#: glue task's evaluation cut): short texts do not pay for max_seq_length, and Triton's dynamic batcher, which
#: batches requests of equal shapes, still finds equal shapes among requests of similar lengths.
SEQ_BUCKET = 16
SQUAD_DEFAULTS = {"doc_stride": 128, "max_query_length": 64, "n_best_size": 20, "max_answer_length": 30,
                  "version_2_with_negative": False, "null_score_diff_threshold": 0.0}


class BadRequest(ValueError):
    """What is wrong with a request, naming the field; the server answers 400 with it."""


@dataclass
class Encoded:
    """A request's model inputs (int32 [rows, sequence]) and what turns the outputs back into answers."""

    arrays: dict[str, np.ndarray]
    instances: int
    #: SQuAD: the questions and their windows (several rows per question when the context is long).
    examples: list[SquadExample] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)


def parse_body(body: Any) -> list[Any]:
    """The ``instances`` list of a v1 body (a dict, or bytes/str of JSON when the client did not say it is JSON)."""
    if isinstance(body, (bytes, bytearray, str)):
        if not body.strip():
            raise BadRequest('body: empty; send {"instances": [...]} as JSON')
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"body: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadRequest(f'body: must be a JSON object {{"instances": [...]}}, got {type(body).__name__}')
    unknown = sorted(set(body) - {"instances"})
    if unknown:
        raise BadRequest(f"body: unknown field {unknown[0][:64]!r} (allowed: instances)")
    instances = body.get("instances")
    if instances is None:
        raise BadRequest('instances: required ({"instances": [{...}, ...]})')
    if not isinstance(instances, list):
        raise BadRequest(f"instances: must be a list, got {type(instances).__name__}")
    if not instances:
        raise BadRequest(f"instances: empty; give 1 to {MAX_INSTANCES}")
    if len(instances) > MAX_INSTANCES:
        raise BadRequest(f"instances: {len(instances)} given, at most {MAX_INSTANCES} a request")
    return instances


def check_instances(instances: Sequence[Any], fields: Sequence[str]) -> list[tuple[str, ...]]:
    """Each instance's texts in `fields` order; BadRequest naming the first field that is missing, unknown, not a
    string, empty or too long."""
    rows = []
    allowed = ", ".join(fields)
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise BadRequest(f"{where}: must be an object with {allowed}, got {type(instance).__name__}")
        unknown = sorted(set(instance) - set(fields))
        if unknown:
            raise BadRequest(f"{where}: unknown field {unknown[0][:64]!r} (allowed: {allowed})")
        texts = []
        for name in fields:
            value = instance.get(name)
            if value is None:
                raise BadRequest(f"{where}.{name}: required (this model takes {allowed})")
            if not isinstance(value, str):
                raise BadRequest(f"{where}.{name}: must be a string, got {type(value).__name__}")
            if not value.strip():
                raise BadRequest(f"{where}.{name}: empty")
            if len(value) > MAX_CHARS[name]:
                raise BadRequest(f"{where}.{name}: {len(value)} characters, at most {MAX_CHARS[name]}")
            texts.append(value)
        rows.append(tuple(texts))
    return rows


def encode(manifest: Manifest, tokenizer: Any, body: Any) -> Encoded:
    """The model inputs of a request body (BadRequest when it is not one this model takes)."""
    rows = check_instances(parse_body(body), manifest.fields)
    if manifest.head == "span":
        options = {**SQUAD_DEFAULTS, **manifest.options}
        examples = [SquadExample(str(i), question, context, (), False) for i, (question, context) in enumerate(rows)]
        features = make_features(examples, tokenizer, manifest.max_seq_length, int(options["doc_stride"]),
                                 int(options["max_query_length"]), training=False)
        arrays = {name: np.array([getattr(f, name) for f in features], dtype=np.int32)
                  for name in ("input_ids", "input_mask", "segment_ids")}
        return Encoded(arrays, len(rows), examples, features)
    texts_b = [row[1] if len(row) > 1 else None for row in rows]
    arrays = encode_pairs(tokenizer, [row[0] for row in rows], texts_b, manifest.max_seq_length)
    longest = int(arrays["input_mask"].sum(axis=1).max())
    length = min(manifest.max_seq_length, -(-longest // SEQ_BUCKET) * SEQ_BUCKET)
    return Encoded({name: np.ascontiguousarray(value[:, :length]) for name, value in arrays.items()}, len(rows))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def answers(manifest: Manifest, encoded: Encoded, outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One prediction per instance: ``{"label", "score"}`` (GLUE) or ``{"answer", "start", "end"}`` (SQuAD, character
    offsets into the context, end exclusive; no answer, for SQuAD 2.0: ``""`` and start = end = -1)."""
    if manifest.head == "classifier":
        probabilities = softmax(outputs["logits"].astype(np.float64))
        best = probabilities.argmax(axis=-1)
        return [{"label": manifest.labels[b], "score": round(float(p[b]), 6)} for b, p in zip(best, probabilities)]
    options = {**SQUAD_DEFAULTS, **manifest.options}
    by_example: dict[int, list[int]] = {}
    for f, feature in enumerate(encoded.features):
        by_example.setdefault(feature.example_index, []).append(f)
    predictions = []
    for index, example in enumerate(encoded.examples):
        (start, end), score, null_score = best_span(
            encoded.features, by_example.get(index, []), outputs["start_logits"], outputs["end_logits"],
            n_best=int(options["n_best_size"]), max_answer_length=int(options["max_answer_length"]))
        no_answer = not np.isfinite(score) or (
            bool(options["version_2_with_negative"]) and null_score - score > float(options["null_score_diff_threshold"]))
        predictions.append({"answer": "", "start": -1, "end": -1} if no_answer
                           else {"answer": example.context[start:end], "start": start, "end": end})
    return predictions
