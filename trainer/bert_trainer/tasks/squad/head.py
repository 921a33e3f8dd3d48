"""The span head's TensorFlow side (``HEAD`` in this package): the model a checkpoint's variables make and what its
SavedModel serves (export), and what ``predict`` does for SQuAD: read the JSON file, build the span head, write
``predictions.json`` (``{qid: answer}``, the official layout; v2.0 also ``null_odds.json``) and, the file having
answers, score it. Features are the squad task's ``make_features`` windows, so the metrics match a training run's.
TensorFlow: imported by export and predict only.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from bert_trainer import storage
from bert_trainer.finetune.classifier import BertSpanHead
from bert_trainer.finetune.squad_data import (Feature, SquadDataError, SquadExample, feature_arrays, make_features,
                                              postprocess, read_squad, score)
from bert_trainer.model.config import BertConfig
from bert_trainer.reports import write_json

#: What reading the file raises: bad input (exit 2), not a bug.
INPUT_ERRORS = (SquadDataError,)
#: Not cut: the n-best search ranks every position's logits, padded ones too (as Google's run_squad), so a cut
#: could change the answers (docs/trainer.md, "Fine-tuning").
CUT_TO_LONGEST = False


def from_weights(cfg: BertConfig, shapes: Mapping[str, Sequence[int]]) -> tf.Module:
    return BertSpanHead(cfg)


def serve(model: tf.Module, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
    starts, ends = model(input_ids, input_mask, segment_ids, training=False)
    return {"start_logits": starts, "end_logits": ends}


def build(cfg: BertConfig, task_name: str) -> tf.Module:
    """The span head, for a Hugging Face folder's weights."""
    return BertSpanHead(cfg)


def featurise(args: argparse.Namespace,
              tokenizer: Any) -> tuple[dict[str, np.ndarray], tuple[list[SquadExample], list[Feature]]]:
    """The model's inputs for every window of every question of --predict_file, and the questions and windows."""
    examples = read_squad(args.predict_file, args.version_2_with_negative, require_answers=False)
    features = make_features(examples, tokenizer, training=False, max_seq_length=args.max_seq_length,
                             doc_stride=args.doc_stride, max_query_length=args.max_query_length)
    return feature_arrays(features), (examples, features)


def finish(args: argparse.Namespace, read: tuple[list[SquadExample], list[Feature]], outputs: dict[str, np.ndarray],
           summary: dict[str, Any]) -> None:
    """predictions.json (and null_odds.json for v2.0), and the examples and, with answers, the metrics in `summary`."""
    examples, features = read
    v2 = args.version_2_with_negative
    predictions, null_odds = postprocess(
        examples, features, outputs["start_logits"], outputs["end_logits"], n_best=args.n_best_size,
        max_answer_length=args.max_answer_length, version_2=v2,
        null_score_diff_threshold=args.null_score_diff_threshold)
    write_json(storage.join(args.output_dir, "predictions.json"), predictions)
    if v2:
        write_json(storage.join(args.output_dir, "null_odds.json"), null_odds)
    summary["examples"] = len(examples)
    if all(e.answers or e.is_impossible for e in examples):  # answers to score against
        summary["metrics"] = score(examples, predictions, null_odds, v2)
