"""The driver behind `python -m bert_trainer predict`: load the model (SavedModel, Hugging Face folder or one of
our checkpoints), run it over the file's features in batches, write predictions and, when scored, metrics.json.

Every kind of model is run through the same ``serving_default`` function: the SavedModel's own, or
:class:`~bert_trainer.model.savedmodel_export.ServingModule` around the model built in-process, so the three
give the same outputs by the same names. Features are made exactly as the training tasks make theirs
(``encode_pairs`` for GLUE, ``make_features`` windows for SQuAD), so the metrics match a training run's dev
evaluation of the same file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
from types import ModuleType
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from bert_trainer import storage
from bert_trainer.checkpoints import fetch_checkpoint
from bert_trainer.finetune.eval_batches import run_cut
from bert_trainer.finetune.tokenization import load_tokenizer
from bert_trainer.model.importer import ImportError_, load_safetensors, resolve_init_checkpoint
from bert_trainer.model.savedmodel_export import INPUTS, ServingModule, load_serving
from bert_trainer.reports import write_json
from bert_trainer.scratch import fresh_scratch_dir
from bert_trainer.tasks.export.driver import CheckpointMismatch, restore
from bert_trainer.tasks.predict import needs, predict_heads

log = logging.getLogger(__name__)
Serve = Callable[..., dict[str, tf.Tensor]]


class PredictMismatch(ValueError):
    """The model cannot run this task (wrong head, label count or files); ``flag`` is the one to fix."""

    def __init__(self, message: str, flag: str = "model") -> None:
        super().__init__(message)
        self.flag = flag


def prediction(task_name: str) -> ModuleType:
    """The module that builds --task_name's head and reads, runs and writes its file: the head's ``module``."""
    return importlib.import_module(predict_heads()[task_name].module)


def _fetch_folder(uri: str, local: str) -> str:
    """A local copy of a folder (an s3:// prefix is downloaded; a local folder is used where it is)."""
    if not storage.is_s3(uri):
        return uri
    entries = storage.list_files(uri)
    for entry, target in zip(entries, storage.local_paths(local, entries, flag="model")):
        storage.download_file(entry.uri, target)
    return local


def load_model(args: argparse.Namespace, scratch: str) -> tuple[Serve, str, Any]:
    """(serving function, architecture, what keeps it alive) for --model, whichever kind it is."""
    if args.model_kind == "savedmodel":
        loaded, fn, arch = load_serving(_fetch_folder(args.model, os.path.join(scratch, "savedmodel")))
        return fn, arch, loaded
    if args.model_kind == "hf":
        local = os.path.join(scratch, "hf", "model.safetensors")
        storage.download_file(storage.join(args.model, "model.safetensors"), local)
        model = prediction(args.task_name).build(args.bert_config, args.task_name)
        report = load_safetensors(model, local)
        if report.missing or report.unused:
            raise PredictMismatch(f"{args.model}: model.safetensors does not hold this head's weights (missing "
                                  f"{report.missing or 'none'}, unused {report.unused or 'none'})")
    else:
        model_flag = next(f for f in ("bert_model", "bert_config_json", "bert_config_file") if getattr(args, f))
        try:
            kind, where = resolve_init_checkpoint(args.model)
        except ImportError_ as exc:
            raise PredictMismatch(str(exc)) from exc
        if kind != "tf":
            raise PredictMismatch(f"{where}: a safetensors file, not one of our checkpoints (export it, or pass "
                                  "the Hugging Face folder)")
        try:
            model = restore(fetch_checkpoint(where, os.path.join(scratch, "checkpoint")), args.bert_config, model_flag)
        except CheckpointMismatch as exc:
            raise PredictMismatch(str(exc), "model" if exc.flag == "checkpoint" else exc.flag) from exc
    module = ServingModule(model)
    return module.serve, module.arch, module


def run_batches(serve: Serve, arrays: dict[str, np.ndarray], batch_size: int, *, cut: bool = False) -> dict[str, np.ndarray]:
    """Every output of `serve` over all rows of `arrays`, batch by batch, in the rows' order. `cut`: batches of
    about one length, each cut to its longest row (finetune/eval_batches.py; for one output per row only)."""
    def run(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in serve(**{n: tf.constant(batch[n], tf.int32) for n in INPUTS}).items()}

    if cut:
        return run_cut(run, {name: arrays[name] for name in INPUTS}, batch_size)
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(arrays["input_ids"]), batch_size):
        for name, value in run({name: arrays[name][start:start + batch_size] for name in INPUTS}).items():
            out.setdefault(name, []).append(value)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = fresh_scratch_dir()
    try:
        return _run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, scratch: str) -> dict[str, Any]:
    tokenizer = load_tokenizer(args.vocab_file, args.do_lower_case, scratch)
    head = prediction(args.task_name)
    # Read and featurise first: bad data fails before any weights load.
    arrays, read = head.featurise(args, tokenizer)
    serve, arch, _keep = load_model(args, scratch)
    if arch != needs(args.task_name):
        raise PredictMismatch(f"{args.model} is a {arch}; --task_name {args.task_name} needs a {needs(args.task_name)}")
    outputs = run_batches(serve, arrays, args.predict_batch_size, cut=head.CUT_TO_LONGEST)
    summary: dict[str, Any] = {"task": args.task_name, "model": args.model, "predict_file": args.predict_file}
    head.finish(args, read, outputs, summary)
    if "metrics" in summary:
        write_json(storage.join(args.output_dir, "metrics.json"), summary)
    log.info("event=predict task=%s examples=%d metrics=%s", args.task_name, summary["examples"],
             json.dumps(summary.get("metrics")))
    print(json.dumps({"event": "predict_done", **summary}), flush=True)
    return summary
