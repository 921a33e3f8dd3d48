"""The one translation between our variable names (Google's TF1 names) and Hugging Face BERT tensor names.

Import (HF safetensors -> our model) and export (our model -> HF safetensors) both go
through here, so the two directions cannot drift apart: :func:`hf_to_google` only
proposes a name and accepts it when :func:`google_to_hf` maps it back to the same HF name.

Hugging Face ``nn.Linear`` stores its weight ``[out, in]`` where Google's ``dense/kernel``
is ``[in, out]``: those are transposed. The head weights that Google already stores
``[out, in]`` (NSP, classifier, SQuAD) are not. Names without the ``bert.`` prefix
(a bare ``BertModel`` like all-MiniLM-L6-v2) and the old ``LayerNorm.gamma/beta`` spelling
are accepted on import; export writes the current spelling with the prefix.
"""

from __future__ import annotations

import functools
import re

from bert_trainer.model.heads import heads


@functools.cache
def head_tensors() -> tuple[dict[str, str], dict[str, str]]:
    """The tensors whose names do not follow the per-layer rule below, none of them transposed: every task's
    head (``Head.tensors``: pretraining's MLM and NSP, run_classifier's, run_squad's), Google -> HF and back."""
    to_hf = {google: hf for head in heads() for google, hf in head.tensors.items()}
    return to_hf, {hf: google for google, hf in to_hf.items()}


# Google leaf -> (HF leaf, transposed?); which one a HF "weight"/"bias" is depends on the module (LayerNorm or not).
_LEAVES = {"kernel": ("weight", True), "bias": ("bias", False), "gamma": ("weight", False), "beta": ("bias", False)}
_BARE_MODEL = ("embeddings.", "encoder.", "pooler.")  # BertModel's own names, saved without "bert."
# Non-weight buffers some files carry (older transformers saved them); neither imported nor exported.
HF_BUFFERS = re.compile(r"(^|\.)(position_ids|token_type_ids)$")
# BertForPreTraining's decoder is tied to the word embeddings and the MLM bias: save_pretrained leaves these
# duplicates out of safetensors (which cannot share storage), so the export does too and the import skips them.
HF_TIED = frozenset({"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"})


def google_to_hf(gname: str) -> tuple[str, bool]:
    """(Hugging Face name, transpose?) of one of our variables; ValueError for a name no BERT model has."""
    to_hf, _ = head_tensors()
    if gname in to_hf:
        return to_hf[gname], False
    path, _, leaf = gname.rpartition("/")
    if leaf.endswith("_embeddings"):  # bert/embeddings/word_embeddings: an nn.Embedding, [rows, hidden] both sides
        return gname.replace("/", ".") + ".weight", False
    if not path or leaf not in _LEAVES:
        raise ValueError(f"{gname}: no Hugging Face name for this variable")
    hf_leaf, transpose = _LEAVES[leaf]
    return re.sub(r"layer_(\d+)", r"layer.\1", path).replace("/", ".") + "." + hf_leaf, transpose


def canonical_hf_name(name: str) -> str:
    """The name as BertForPreTraining & co. save it today: ``bert.`` prefix, LayerNorm ``weight``/``bias``."""
    if name.startswith(_BARE_MODEL):
        name = "bert." + name
    if ".LayerNorm." in name:
        name = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))
    return name


def hf_to_google(name: str) -> tuple[str, bool] | None:
    """(Google name, transpose?) of a Hugging Face tensor; None when it is no BERT weight we know."""
    hf = canonical_hf_name(name)
    _, from_hf = head_tensors()
    if hf in from_hf:
        return from_hf[hf], False
    m = re.match(r"^(.*)\.(weight|bias)$", hf)
    if not m:
        return None
    path, leaf = m.group(1), m.group(2)
    gpath = re.sub(r"layer\.(\d+)", r"layer_\1", path).replace(".", "/")
    if path.endswith("_embeddings") and leaf == "weight":
        candidate = gpath
    elif path.endswith("LayerNorm"):
        candidate = f"{gpath}/{'gamma' if leaf == 'weight' else 'beta'}"
    else:
        candidate = f"{gpath}/{'kernel' if leaf == 'weight' else 'bias'}"
    try:
        back, transpose = google_to_hf(candidate)
    except ValueError:
        return None
    return (candidate, transpose) if back == hf else None
