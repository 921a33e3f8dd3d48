"""The driver behind `python -m bert_trainer export`: read one of our checkpoints, write it as Hugging Face files
or a SavedModel (--format).

Which model a checkpoint holds is read from the checkpoint itself: each variable is
saved with its Google name (``named_variable`` makes it the variable's name, which the
object graph records as ``full_name``), so the head, and a classifier's label count,
need no flag. The model is then built from the model flags and restored through the
importer, which checks that checkpoint and flags agree before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from bert_trainer.checkpoints import fetch_checkpoint
from bert_trainer.model.config import BertConfig
from bert_trainer.model.heads import head_module
from bert_trainer.model.export import write_export
from bert_trainer.model.hf_export import ExportError, architecture
from bert_trainer.model.importer import ImportError_, load_tf_checkpoint, resolve_init_checkpoint
from bert_trainer.scratch import fresh_scratch_dir

log = logging.getLogger(__name__)
GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


class CheckpointMismatch(ValueError):
    """The checkpoint cannot be exported with these flags; ``flag`` is the one to fix (exit 2 names it)."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


def checkpoint_shapes(prefix: str) -> dict[str, list[int]]:
    """Google name -> shape of every model weight in one of our checkpoints (optimizer slots and counters left out)."""
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    if GRAPH_KEY not in shapes:
        raise CheckpointMismatch(f"{prefix}: not a bert-operator checkpoint (no object graph)", "checkpoint")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(GRAPH_KEY))
    return {attr.full_name.replace("__", "/"): shapes[attr.checkpoint_key]
            for node in graph.nodes for attr in node.attributes
            if attr.checkpoint_key.startswith("model/") and ".OPTIMIZER_SLOT" not in attr.checkpoint_key}


def restore(prefix: str, cfg: BertConfig, model_flag: str) -> tf.Module:
    """The model the checkpoint holds, built from ``cfg`` and restored; CheckpointMismatch when they disagree."""
    shapes = checkpoint_shapes(prefix)
    try:
        arch = architecture(shapes)
    except ExportError as exc:
        raise CheckpointMismatch(f"{prefix}: {exc}", "checkpoint") from exc
    model: tf.Module = head_module(arch).from_weights(cfg, shapes)
    expected = {name: list(var.shape) for name, var in model.named_variables().items()}
    for name in sorted(set(expected) | set(shapes)):
        if expected.get(name) != shapes.get(name):
            raise CheckpointMismatch(f"{prefix}: {name} is {shapes.get(name, 'absent')} in the checkpoint, "
                                     f"{expected.get(name, 'absent')} in the model these flags describe", model_flag)
    try:
        load_tf_checkpoint(model, prefix)
    except ImportError_ as exc:
        raise CheckpointMismatch(str(exc), "checkpoint") from exc
    return model


def run(args: argparse.Namespace, cfg: BertConfig) -> list[str]:
    """Export the checkpoint --checkpoint names (its newest published one, for a folder); returns the URIs written."""
    model_flag = next(f for f in ("bert_model", "bert_config_json", "bert_config_file") if getattr(args, f))
    scratch = fresh_scratch_dir()
    try:
        try:
            kind, where = resolve_init_checkpoint(args.checkpoint)
        except ImportError_ as exc:
            raise CheckpointMismatch(str(exc), "checkpoint") from exc
        if kind != "tf":
            raise CheckpointMismatch(f"{where}: already Hugging Face safetensors, nothing to export", "checkpoint")
        model = restore(fetch_checkpoint(where, os.path.join(scratch, "checkpoint")), cfg, model_flag)
        written = write_export(args.format, model, cfg, args.output_dir, os.path.join(scratch, args.format),
                               vocab_file=args.vocab_file, do_lower_case=args.do_lower_case)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # a BERT-Large export stages 1.3 GB of weights here
    arch = architecture(model.named_variables())
    log.info("event=export checkpoint=%s format=%s architecture=%s files=%d", where, args.format, arch, len(written))
    print(json.dumps({"event": "export_done", "checkpoint": where, "format": args.format, "architecture": arch,
                      "files": written}), flush=True)
    return written
