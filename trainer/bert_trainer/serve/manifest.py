"""The export's ``assets/``: ``serving.json`` (what the model is and how its text is tokenised) and ``vocab.txt``.

Read once when a transformer starts, from local disk or s3:// (the InferenceService's storage URI). A file that is
missing or does not hold what the exporter writes stops the server with a message naming the file and the key,
before it reports ready, instead of failing the first request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bert_common.contract import SERVING_FILE
from bert_trainer import storage

#: The request fields of each kind of model, in the order they are tokenised (sentence A, then B).
FIELDS = {"single": ("sentence",), "pair": ("sentence1", "sentence2"), "span": ("question", "context")}
HEADS = ("classifier", "span")


class ManifestError(ValueError):
    """The assets are not a serving export's; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Manifest:
    task: str
    model: str
    head: str
    labels: tuple[str, ...]
    max_seq_length: int
    do_lower_case: bool
    #: The request's fields (FIELDS' values).
    fields: tuple[str, ...]
    #: A span head's windowing and answer search (triton_export.Serving.options).
    options: dict[str, Any] = field(default_factory=dict)
    #: The assets' vocab.txt (local, or s3://: finetune.tokenization.load_tokenizer copies it to its scratch folder).
    vocab_file: str = ""


def _typed(where: str, body: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def load_manifest(assets_uri: str) -> Manifest:
    """The manifest of `assets_uri` (local or s3://), with where its vocab.txt is."""
    where = storage.join(assets_uri, SERVING_FILE)
    try:
        body = json.loads(storage.read_bytes(where).decode("utf-8"))
    except storage.StorageError as exc:
        raise ManifestError(f"{where}: cannot read ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ManifestError(f"{where}: not a JSON object")
    head = _typed(where, body, "head", str)
    if head not in HEADS:
        raise ManifestError(f"{where}: 'head' must be one of {', '.join(HEADS)}, got {head!r}")
    labels = tuple(_typed(where, body, "labels", list))
    if not all(isinstance(label, str) for label in labels) or (head == "classifier" and len(labels) < 2):
        raise ManifestError(f"{where}: 'labels' must list a classifier's label names (strings), got {labels!r}")
    fields = tuple(body.get("fields") or FIELDS["span" if head == "span" else "pair"])
    if fields not in FIELDS.values():
        raise ManifestError(f"{where}: 'fields' must be one of {list(FIELDS.values())}, got {list(fields)!r}")
    max_seq_length = _typed(where, body, "max_seq_length", int)
    if max_seq_length < 8:
        raise ManifestError(f"{where}: 'max_seq_length' must be at least 8, got {max_seq_length}")
    vocab_file = storage.join(assets_uri, "vocab.txt")  # (s3://: load_tokenizer copies it to its scratch folder)
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ManifestError(f"{where}: 'options' must be an object")
    return Manifest(task=_typed(where, body, "task", str), model=_typed(where, body, "model", str), head=head,
                    labels=labels, max_seq_length=max_seq_length,
                    do_lower_case=_typed(where, body, "do_lower_case", bool), fields=fields, options=options,
                    vocab_file=vocab_file)
