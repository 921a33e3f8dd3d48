"""GLUE fine-tuning (CoLA, MRPC, MNLI): the driver behind `python -m bert_trainer glue`.

Reads the task's TSVs, encodes them with WordPiece, fine-tunes a BertClassifier
from --init_checkpoint with the warmup + linear-decay schedule (AdamW by
default, as NVIDIA's run_classifier), then scores every dev split with the
task's GLUE metric. Rank 0 writes progress.json, the final checkpoint, the
--export_formats exports (<output_dir>/export/<format>/) and results.json under
--output_dir, and reports them to the operator when asked.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import numpy as np
import tensorflow as tf

from bert_trainer import output_lock
from bert_trainer.dist import SingleProcess, create_world
from bert_trainer.finetune.classifier import BertClassifier, load_encoder
from bert_trainer.finetune.eval_batches import SEQUENCE_KEYS, run_cut
from bert_trainer.finetune.glue_data import LABEL_NAMES, TASKS, read_examples
from bert_trainer.finetune.losses import classification_loss
from bert_trainer.finetune.loop import COMPUTE_DTYPES, fine_tune, finish
from bert_trainer.finetune.metrics import glue_metrics
from bert_trainer.finetune.tokenization import encode_pairs, load_tokenizer
from bert_trainer.model.config import BertConfig
from bert_trainer.model.export import export_stage
from bert_trainer.model.triton_export import Serving
from bert_trainer.reports import ReportWriter
from bert_trainer.scratch import fresh_scratch_dir
from bert_trainer.tasks.finetuning import print_metrics

log = logging.getLogger(__name__)

#: Dev batches are cut to their longest pair rounded up to TRIM_MULTIPLE tokens; under XLA, which compiles a
#: program per shape, training batches to a coarser multiple (at most 4 programs at --max_seq_length 128).
TRIM_MULTIPLE, TRIM_MULTIPLE_XLA = 8, 32


def train_cut(use_xla: bool) -> int:
    """The multiple of tokens a training batch is cut to (trim_padding): its exact longest pair without XLA.

    Why exact: the step is traced once for every length (TrainEngine.expect_batches), so a rounded length saves
    no trace, and it costs compute: over batches of 32, rounding up to 8 made MRPC's 80.1 tokens 83.9 (+4.8%) and
    CoLA's 23.1 tokens 26.2 (+13.8%), where transformers pads to the exact longest. XLA compiles per shape, so
    there the coarse multiple stays."""
    return TRIM_MULTIPLE_XLA if use_xla else 1


def _encode(tokenizer, examples, max_seq_length: int) -> dict[str, np.ndarray]:
    features = encode_pairs(tokenizer, [e.text_a for e in examples], [e.text_b for e in examples], max_seq_length)
    features["labels"] = np.array([e.label for e in examples], dtype=np.int32)
    return features


def dev_logits(model: BertClassifier, features: dict[str, np.ndarray], batch_size: int,
               compute_dtype: tf.DType) -> np.ndarray:
    """Logits of every example, in order (no padding examples, no sharding: rank 0 scores the full split).

    Batches are examples of about one length, each cut to its longest (finetune/eval_batches.py): exact for the
    [CLS] classifier, as the training cut is. One trace serves every length (the signature leaves it open)."""
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def logits(ids, mask, segments):
        return model(ids, mask, segments, training=False, compute_dtype=compute_dtype)

    def run(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"logits": logits(batch["input_ids"], batch["input_mask"], batch["segment_ids"]).numpy()}

    return run_cut(run, {key: features[key] for key in SEQUENCE_KEYS}, batch_size, TRIM_MULTIPLE)["logits"]


def predict(model: BertClassifier, features: dict[str, np.ndarray], batch_size: int, compute_dtype: tf.DType) -> np.ndarray:
    """Predicted label ids for every example, in order."""
    return np.argmax(dev_logits(model, features, batch_size, compute_dtype), -1)


def run(args: argparse.Namespace, cfg: BertConfig) -> dict[str, Any]:
    """Fine-tune and score as the flags say, holding --output_dir (output_lock); returns the results (rank 0's)."""
    world = create_world(args.horovod)
    with output_lock.hold(args.output_dir, task="glue", chief=world.is_chief, world=world):
        return _run(args, cfg, world)


def _run(args: argparse.Namespace, cfg: BertConfig, world: SingleProcess) -> dict[str, Any]:
    scratch = fresh_scratch_dir()
    fmt = TASKS[args.task_name]
    tokenizer = load_tokenizer(args.vocab_file, args.do_lower_case, scratch)
    # Read and encode every split first: bad data fails in seconds, before any weights load.
    train = (_encode(tokenizer, read_examples(args.task_name, args.data_dir, "train"), args.max_seq_length)
             if args.do_train else None)
    evals = {split: _encode(tokenizer, read_examples(args.task_name, args.data_dir, split), args.max_seq_length)
             for split in (fmt.eval_splits if args.do_eval else ())}
    model = BertClassifier(cfg, len(fmt.labels), seed=args.seed)
    if args.init_checkpoint:
        report = load_encoder(model, args.init_checkpoint, scratch)
        log.info("event=init_checkpoint_summary loaded=%d missing=%s unused=%s",
                 len(report.loaded), report.missing, report.unused)
    variables = list(model.named_variables().values())
    world.broadcast_variables(variables)
    compute_dtype = COMPUTE_DTYPES[args.precision]
    reports = ReportWriter(args.output_dir, chief=world.is_chief)
    results: dict[str, Any] = {"task": args.task_name}

    def first_epoch() -> None:
        """--first_epoch_eval: rank 0 scores the first dev split and reports it (a sweep's early stop reads it)."""
        if world.is_chief and evals:
            split, features = next(iter(evals.items()))
            predictions = predict(model, features, args.eval_batch_size, compute_dtype)
            results["firstEpoch"] = {**glue_metrics(args.task_name, features["labels"].tolist(), predictions.tolist()),
                                     "classes": int(len(np.unique(predictions)))}
            log.info("event=first_epoch_eval split=%s %s", split, json.dumps(results["firstEpoch"]))
            reports.results(results)

    if train is not None:
        # The classifier reads [CLS] only, so batches are cut to their longest pair (exact; see trim_padding).
        results.update(fine_tune(model, train, classification_loss, args, world, reports, scratch,
                                 trim_to=train_cut(args.use_xla),
                                 after_first_epoch=first_epoch if args.first_epoch_eval else None))

    if world.is_chief:
        for split, features in evals.items():
            predictions = predict(model, features, args.eval_batch_size, compute_dtype)
            results[split] = glue_metrics(args.task_name, features["labels"].tolist(), predictions.tolist())
            log.info("event=eval split=%s %s", split, json.dumps(results[split]))
    serving = Serving(args.task_name, "classifier", LABEL_NAMES[args.task_name], args.max_seq_length,
                      args.do_lower_case, fields=("sentence",) if fmt.text_b is None else ("sentence1", "sentence2"),
                      tensorrt=args.triton_tensorrt)
    results["exported"] = export_stage(model, cfg, args.output_dir, args.export_formats, vocab_file=args.vocab_file,
                                       do_lower_case=args.do_lower_case, serving=serving) if world.is_chief else []
    results = finish(results, world, reports)
    print_metrics(args, results, world.is_chief)
    return results
