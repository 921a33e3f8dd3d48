"""Weights-only initialisation (``--init_checkpoint``) from three sources:

* this project's checkpoints (tf.train.Checkpoint object graph, ``ckpt-N``),
* Google's TF1 BERT checkpoints (``bert_model.ckpt``, names like ``bert/encoder/layer_0/...``),
* Hugging Face BERT ``*.safetensors`` (BertModel, BertForPreTraining, BertForSequenceClassification or
  BertForQuestionAnswering naming; the last two into a model with that head).

Our variables carry Google names, so Google import is a direct lookup and Hugging
Face import is a name translation plus a transpose of Linear weights
(:mod:`bert_trainer.model.hf_names`, shared with the export). Every import
returns an ``ImportReport`` so callers (and tests) can check that nothing was
silently missed or left unused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

import numpy as np
import tensorflow as tf

from bert_trainer import storage
from bert_trainer.checkpoints import CKPT_RE, fetch_checkpoint, newest_checkpoint
from bert_trainer.model.hf_names import HF_BUFFERS, HF_TIED, hf_to_google

log = logging.getLogger(__name__)

# Optimizer state and counters in Google's TF1 checkpoints.
TF1_NON_WEIGHTS = re.compile(r"(adam_[mv]|Momentum|global_step|lamb_[mv]|/m$|/v$|beta[12]_power|loss_scale|good_steps)")


class ImportError_(RuntimeError):
    """The init checkpoint cannot be used; message says what and why."""


@dataclasses.dataclass
class ImportReport:
    source: str
    kind: str
    loaded: list[str]
    missing: list[str]  # model variables the source did not provide (keep their initial values)
    unused: list[str]   # source weights that matched nothing in the model


def _assign_all(model, tensors: dict[str, np.ndarray], source: str, kind: str,
                extra_unused: list[str]) -> ImportReport:
    named = model.named_variables()
    loaded, missing = [], []
    for gname, var in named.items():
        if gname not in tensors:
            missing.append(gname)
            continue
        value = tensors[gname]
        if tuple(value.shape) != tuple(var.shape):
            raise ImportError_(f"{source}: {gname} has shape {tuple(value.shape)}, model expects {tuple(var.shape)}"
                               " (does --bert_config_file match the checkpoint?)")
        var.assign(value.astype(np.float32))
        loaded.append(gname)
    unused = sorted(extra_unused + [k for k in tensors if k not in named])
    if not loaded:
        raise ImportError_(f"{source}: no weight matched the model; is it a BERT checkpoint?")
    report = ImportReport(source, kind, loaded, missing, unused)
    log.info("event=init_checkpoint kind=%s source=%s loaded=%d missing=%d unused=%d",
             kind, source, len(loaded), len(missing), len(unused))
    return report


def load_safetensors(model, path: str) -> ImportReport:
    from safetensors.numpy import load_file  # noqa: PLC0415

    raw = load_file(path)
    tensors: dict[str, np.ndarray] = {}
    unused: list[str] = []
    for name, value in raw.items():
        if HF_BUFFERS.search(name) or name in HF_TIED:
            continue
        mapped = hf_to_google(name)
        if mapped is None:
            unused.append(name)
            continue
        gname, transpose = mapped
        tensors[gname] = value.T if transpose else value
    return _assign_all(model, tensors, path, "huggingface-safetensors", unused)


def load_tf_checkpoint(model, prefix: str) -> ImportReport:
    """Google TF1 name-based checkpoint, or this project's object-based one."""
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as exc:
        raise ImportError_(f"{prefix}: not a readable TensorFlow checkpoint ({exc})") from exc
    keys = reader.get_variable_to_shape_map()
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in keys:
        ckpt = tf.train.Checkpoint(model=model)
        status = ckpt.read(prefix)
        status.expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            raise ImportError_(f"{prefix}: checkpoint does not match the model ({exc})") from exc
        names = list(model.named_variables())
        log.info("event=init_checkpoint kind=bert-operator source=%s loaded=%d", prefix, len(names))
        return ImportReport(prefix, "bert-operator", names, [], [])
    tensors = {k: reader.get_tensor(k) for k in keys if not TF1_NON_WEIGHTS.search(k)}
    return _assign_all(model, tensors, prefix, "google-tf1", [])


def _newest_in(dir_uri: str) -> tuple[str, str]:
    """Pick what to load from a directory: a safetensors file, else the newest TF checkpoint."""
    entries = [e for e in storage.list_files(dir_uri) if "/" not in e.relpath]
    st = [e for e in entries if e.relpath.endswith(".safetensors")]
    if st:
        return "safetensors", st[0].uri
    best = newest_checkpoint(dir_uri)  # a published one (its manifest matches), not one half uploaded
    if best:
        return "tf", best[1]
    plain = [e for e in entries if e.relpath.endswith(".index")]  # e.g. bert_model.ckpt.index
    if plain:
        return "tf", plain[0].uri[: -len(".index")]
    sub = storage.join(dir_uri, "checkpoints")
    if any(CKPT_RE.match(e.relpath) for e in storage.list_files(sub)):
        return _newest_in(sub)
    raise ImportError_(f"{dir_uri}: no checkpoint (*.index) or *.safetensors file found")


def resolve_init_checkpoint(uri: str) -> tuple[str, str]:
    """(kind, uri) for a directory, a safetensors file or a TF checkpoint prefix."""
    if uri.endswith(".safetensors"):
        return "safetensors", uri
    if storage.exists(uri + ".index"):
        return "tf", uri
    if storage.is_s3(uri) or os.path.isdir(uri):
        if storage.list_files(uri):
            return _newest_in(uri)
    raise ImportError_(f"{uri}: not found (expected a directory, a *.safetensors file or a checkpoint prefix)")


def load_init_checkpoint(model, uri: str, scratch_dir: str) -> ImportReport:
    """Load weights only (no optimizer state, no step) into ``model``."""
    kind, where = resolve_init_checkpoint(uri)
    if kind == "safetensors":
        local = where
        if storage.is_s3(where):
            local = os.path.join(scratch_dir, "init", os.path.basename(where))
            storage.download_file(where, local)
        return load_safetensors(model, local)
    return load_tf_checkpoint(model, fetch_checkpoint(where, os.path.join(scratch_dir, "init")))
