"""The classifier head's TensorFlow side (``HEAD`` in this package): the model a checkpoint's variables make and
what its SavedModel serves (export), and what ``predict`` does for a GLUE task: read the TSV, build the classifier,
write ``predictions.tsv`` (``index<TAB>prediction``, the label as the task's files spell it, GLUE's submission
layout) and score it. Features are made as the glue task makes its dev set's (``encode_pairs``), so the metrics
match a training run's. TensorFlow: imported by export and predict only.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from bert_trainer import storage
from bert_trainer.finetune.classifier import BertClassifier
from bert_trainer.finetune.glue_data import TASKS as GLUE_TASKS
from bert_trainer.finetune.glue_data import Example, GlueDataError, read_examples
from bert_trainer.finetune.metrics import glue_metrics
from bert_trainer.finetune.tokenization import encode_pairs
from bert_trainer.model.config import BertConfig
from bert_trainer.tasks.predict.driver import PredictMismatch

#: What reading the file raises: bad input (exit 2), not a bug.
INPUT_ERRORS = (GlueDataError,)
#: predict runs batches of about one length, each cut to its longest pair: exact for the [CLS] classifier
#: (finetune/eval_batches.py), as the glue task's own dev evaluation does.
CUT_TO_LONGEST = True


def from_weights(cfg: BertConfig, shapes: Mapping[str, Sequence[int]]) -> tf.Module:
    """The classifier with as many labels as the checkpoint's output_weights has rows."""
    return BertClassifier(cfg, shapes["output_weights"][0])


def serve(model: tf.Module, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"logits": model(input_ids, input_mask, segment_ids, training=False)}


def build(cfg: BertConfig, task_name: str) -> tf.Module:
    """The classifier, with the task's label count, for a Hugging Face folder's weights."""
    return BertClassifier(cfg, len(GLUE_TASKS[task_name].labels))


def featurise(args: argparse.Namespace, tokenizer: Any) -> tuple[dict[str, np.ndarray], list[Example]]:
    """The model's inputs for every row of --predict_file, and the rows."""
    folder, _, name = args.predict_file.rpartition("/")
    examples = read_examples(args.task_name, folder or ".", name[: -len(".tsv")])
    arrays = encode_pairs(tokenizer, [e.text_a for e in examples], [e.text_b for e in examples], args.max_seq_length)
    return arrays, examples


def finish(args: argparse.Namespace, examples: list[Example], outputs: dict[str, np.ndarray],
           summary: dict[str, Any]) -> None:
    """predictions.tsv, and the examples and metrics in `summary`."""
    labels = GLUE_TASKS[args.task_name].labels
    logits = outputs["logits"]
    if logits.shape[-1] != len(labels):
        raise PredictMismatch(f"{args.model}: {logits.shape[-1]} labels; {args.task_name} has {len(labels)}")
    predicted = np.argmax(logits, -1)
    lines = ["index\tprediction"] + [f"{i}\t{labels[p]}" for i, p in enumerate(predicted)]
    storage.write_bytes(storage.join(args.output_dir, "predictions.tsv"), ("\n".join(lines) + "\n").encode())
    summary["examples"] = len(examples)
    summary["metrics"] = glue_metrics(args.task_name, [e.label for e in examples], predicted.tolist())
