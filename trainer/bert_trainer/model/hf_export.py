"""Write our weights as a Hugging Face BERT folder that ``from_pretrained`` loads.

``config.json`` (BertConfig fields, the architecture), ``model.safetensors`` (names and
layouts of :mod:`bert_trainer.model.hf_names`, the same table the importer reads) and,
given a vocab, ``vocab.txt`` and ``tokenizer_config.json`` for BertTokenizer.

Which architecture follows from the head the weights hold, as the task that trains it declares
(:mod:`bert_trainer.model.heads`): the MLM + NSP heads are a BertForPreTraining, Google
run_classifier's ``output_weights`` a BertForSequenceClassification, run_squad's ``cls/squad``
a BertForQuestionAnswering.
NumPy only (no TensorFlow): the caller hands over the values.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from bert_trainer import storage
from bert_trainer.model.config import BertConfig
from bert_trainer.model.heads import Head, heads, listing
from bert_trainer.model.hf_names import google_to_hf

# Our tanh-approximated GELU spellings -> the name transformers' ACT2FN has for that function.
_HF_ACTIVATIONS = {"gelu_tanh": "gelu_new"}


class ExportError(ValueError):
    """The weights cannot be exported as they are; the message says which and why."""


def head_of(names: Mapping[str, object]) -> Head:
    """The head these of our variables hold (``Head.detect``). The fine-tuning tasks come after pretrain in the
    task registry and are asked first, so a fine-tuned head wins over pretraining's, as it always did."""
    found = next((head for head in reversed(heads()) if all(name in names for name in head.detect)), None)
    if found is None:
        raise ExportError(f"the weights hold none of the {listing([head.label for head in heads()])} heads")
    return found


def architecture(names: Mapping[str, object]) -> str:
    """The Hugging Face class whose state dict these of our variables make."""
    return head_of(names).architecture


def hf_tensors(named: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our values under Hugging Face names, Linear weights transposed to [out, in]
    (and contiguous: safetensors writes the buffer as it lies)."""
    out: dict[str, np.ndarray] = {}
    for gname, value in named.items():
        hf, transpose = google_to_hf(gname)
        out[hf] = np.ascontiguousarray(value.T if transpose else value)
    return out


def hf_config(cfg: BertConfig, arch: str, num_labels: int | None = None) -> dict[str, object]:
    """config.json: our BertConfig (transformers uses the same field names) plus what HF needs to pick the class."""
    body: dict[str, object] = {
        "architectures": [arch], "model_type": "bert", **cfg.to_dict(),
        "hidden_act": _HF_ACTIVATIONS.get(cfg.hidden_act, cfg.hidden_act),
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }
    if num_labels is not None:  # HF derives num_labels from id2label; without it a 3-way MNLI head loads as 2-way
        body["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        body["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    return body


def tokenizer_config(do_lower_case: bool, model_max_length: int) -> dict[str, object]:
    return {"tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case, "model_max_length": model_max_length}


def num_labels_of(named: Mapping[str, Any], arch: str) -> int | None:
    """A classifier's label count (the rows of its ``Head.labels_from``, any value with a shape); None for the
    other heads."""
    source = next((head.labels_from for head in heads() if head.architecture == arch), None)
    return int(named[source].shape[0]) if source else None


def metadata_files(named: Mapping[str, object], cfg: BertConfig, *, vocab_file: str | None = None,
                   do_lower_case: bool = False) -> dict[str, bytes]:
    """config.json and, given a vocab, vocab.txt and tokenizer_config.json: what the HF folder ships beside its
    weights, and the SavedModel export in its assets/ (so both describe model and tokenizer alike)."""
    arch = architecture(named)
    files = {"config.json": json.dumps(hf_config(cfg, arch, num_labels_of(named, arch)), indent=2).encode()}
    if vocab_file:
        files["vocab.txt"] = storage.read_bytes(vocab_file)
        files["tokenizer_config.json"] = json.dumps(tokenizer_config(do_lower_case, cfg.max_position_embeddings),
                                                    indent=2).encode()
    return files


def write_hf_export(named: Mapping[str, np.ndarray], cfg: BertConfig, output_dir: str, scratch_dir: str, *,
                    vocab_file: str | None = None, do_lower_case: bool = False) -> list[str]:
    """Write the folder under ``output_dir`` (local or s3://); returns the URIs written. The weights go
    first and config.json after them, so a folder with a config.json has its weights."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    metadata = metadata_files(named, cfg, vocab_file=vocab_file, do_lower_case=do_lower_case)
    tensors = hf_tensors(named)
    local = os.path.join(scratch_dir, "model.safetensors")
    os.makedirs(scratch_dir, exist_ok=True)
    save_file(tensors, local, metadata={"format": "pt"})  # transformers refuses safetensors without a format
    written = []
    weights_uri = storage.join(output_dir, "model.safetensors")
    storage.upload_file(local, weights_uri)
    written.append(weights_uri)
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        if name in metadata:
            uri = storage.join(output_dir, name)
            storage.write_bytes(uri, metadata[name])
            written.append(uri)
    return written
