"""SQuAD v1.1/v2.0 fine-tuning: the driver behind `python -m bert_trainer squad`.

Reads the official JSON, cuts contexts into doc_stride windows, fine-tunes a
BertSpanHead from --init_checkpoint, predicts spans for --predict_file, maps
them back to the original text (n-best, v2.0 null threshold) and scores them
with the official metric definitions. Rank 0 writes predictions.json,
null_odds.json (v2.0), the checkpoint, the --export_formats exports
(<output_dir>/export/<format>/) and results.json under --output_dir.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import tensorflow as tf

from bert_trainer import output_lock, storage
from bert_trainer.dist import SingleProcess, create_world
from bert_trainer.finetune.classifier import BertSpanHead, load_encoder
from bert_trainer.finetune.losses import span_loss
from bert_trainer.finetune.loop import COMPUTE_DTYPES, fine_tune, finish
from bert_trainer.finetune.squad_data import feature_arrays, make_features, postprocess, read_squad, score
from bert_trainer.finetune.tokenization import load_tokenizer
from bert_trainer.model.config import BertConfig
from bert_trainer.model.export import export_stage
from bert_trainer.model.triton_export import Serving
from bert_trainer.reports import ReportWriter, write_json
from bert_trainer.scratch import fresh_scratch_dir
from bert_trainer.tasks.finetuning import print_metrics

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, cfg: BertConfig) -> dict[str, Any]:
    """Fine-tune and score as the flags say, holding --output_dir (output_lock); returns the results (rank 0's)."""
    world = create_world(args.horovod)
    with output_lock.hold(args.output_dir, task="squad", chief=world.is_chief, world=world):
        return _run(args, cfg, world)


def _run(args: argparse.Namespace, cfg: BertConfig, world: SingleProcess) -> dict[str, Any]:
    scratch = fresh_scratch_dir()
    tokenizer = load_tokenizer(args.vocab_file, args.do_lower_case, scratch)
    v2 = args.version_2_with_negative
    window = dict(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride, max_query_length=args.max_query_length)
    # Read and featurise first: bad data fails before any weights load.
    train = None
    if args.do_train:
        train_examples = read_squad(args.train_file, v2)
        train = feature_arrays(make_features(train_examples, tokenizer, training=True, **window))
    predict_examples = read_squad(args.predict_file, v2) if args.do_predict else []
    predict_features = make_features(predict_examples, tokenizer, training=False, **window) if predict_examples else []
    model = BertSpanHead(cfg, seed=args.seed)
    if args.init_checkpoint:
        report = load_encoder(model, args.init_checkpoint, scratch)
        log.info("event=init_checkpoint_summary loaded=%d missing=%s unused=%s",
                 len(report.loaded), report.missing, report.unused)
    world.broadcast_variables(list(model.named_variables().values()))
    reports = ReportWriter(args.output_dir, chief=world.is_chief)
    results: dict[str, Any] = {"task": f"squad-v{'2.0' if v2 else '1.1'}"}
    if train is not None:
        results.update(fine_tune(model, train, span_loss, args, world, reports, scratch))
    if predict_features and world.is_chief:
        arrays = feature_arrays(predict_features)
        compute_dtype = COMPUTE_DTYPES[args.precision]

        @tf.function
        def logits(ids, mask, segments):
            return model(ids, mask, segments, training=False, compute_dtype=compute_dtype)

        starts, ends = [], []
        for begin in range(0, len(predict_features), args.predict_batch_size):
            sl = slice(begin, begin + args.predict_batch_size)
            s, e = logits(arrays["input_ids"][sl], arrays["input_mask"][sl], arrays["segment_ids"][sl])
            starts.append(s.numpy())
            ends.append(e.numpy())
        predictions, null_odds = postprocess(
            predict_examples, predict_features, np.concatenate(starts), np.concatenate(ends), n_best=args.n_best_size,
            max_answer_length=args.max_answer_length, version_2=v2, null_score_diff_threshold=args.null_score_diff_threshold)
        write_json(storage.join(args.output_dir, "predictions.json"), predictions)
        if v2:
            write_json(storage.join(args.output_dir, "null_odds.json"), null_odds)
        results["predict"] = score(predict_examples, predictions, null_odds, v2)
        log.info("event=eval %s", results["predict"])
    options = {"doc_stride": args.doc_stride, "max_query_length": args.max_query_length, "n_best_size": args.n_best_size,
               "max_answer_length": args.max_answer_length, "version_2_with_negative": v2,
               "null_score_diff_threshold": args.null_score_diff_threshold}
    serving = Serving("squad", "span", (), args.max_seq_length, args.do_lower_case, fields=("question", "context"),
                      tensorrt=args.triton_tensorrt, options=options)
    results["exported"] = export_stage(model, cfg, args.output_dir, args.export_formats, vocab_file=args.vocab_file,
                                       do_lower_case=args.do_lower_case, serving=serving) if world.is_chief else []
    results = finish(results, world, reports)
    print_metrics(args, results, world.is_chief)
    return results
