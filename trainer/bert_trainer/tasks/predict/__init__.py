"""``predict``: run a fine-tuned model on a GLUE TSV or a SQuAD JSON file, write its predictions and, the file
having labels or answers, its metrics (the same functions the training tasks score their dev sets with).

The model is any of: a Hugging Face folder we exported (config.json + model.safetensors; its vocab.txt and
tokenizer_config.json are the tokenizer's defaults), a SavedModel we exported (saved_model.pb; the same files in
its assets/), or one of our checkpoints (a ckpt-N prefix, a checkpoints folder or a task's --output_dir, with the
model flags). Flags as NVIDIA's run_classifier.py / run_squad.py. Writes under --output_dir:
GLUE ``predictions.tsv`` (``index<TAB>prediction``, the label as the task's files spell it, GLUE's submission
layout), SQuAD ``predictions.json`` (``{qid: answer}``, the official layout; v2.0 also ``null_odds.json``), and
``metrics.json`` when scored.

This module is the command line (TensorFlow-free); the work is :mod:`bert_trainer.tasks.predict.driver`. What
differs per head (the --task_name values, the default --max_seq_length, the checks of the flags, how the file is
read, run and written) is the fine-tuning task's own: its ``HEAD`` (:mod:`bert_trainer.model.heads`) and the
module that names (``bert_trainer.tasks.glue.head``, ``bert_trainer.tasks.squad.head``).
"""

from __future__ import annotations

import argparse
import json

from bert_trainer import storage
from bert_trainer.flags import add_model_flags, bool_flag
from bert_trainer.model.heads import Head, heads
from bert_trainer.tasks.common import check_output_dir, require_positive, resolve_config, run_guarded

NAME = "predict"
HELP = "predictions (and metrics) of an exported model or a checkpoint on a GLUE TSV or a SQuAD JSON file"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 60
MODEL_FLAGS = ("bert_model", "bert_config_json", "bert_config_file")


def predict_heads() -> dict[str, Head]:
    """The head each --task_name needs (its architecture: the Hugging Face class name config.json lists), as the
    fine-tuning tasks declare them (``Head.predict_names``); asked when the parser is built, once every task
    module is loaded."""
    return {name: head for head in heads() for name in head.predict_names}


def needs(task_name: str) -> str:
    """The architecture --task_name needs."""
    return predict_heads()[task_name].architecture


def _seq_length_help() -> str:
    """'default 128 (GLUE), 384 (squad)': per head, its one --task_name or, having several, its label."""
    shown = [(head.predict_seq_length, head.predict_names[0] if len(head.predict_names) == 1 else head.label)
             for head in heads() if head.predict_names]
    return "default " + ", ".join(f"{length} ({name})" for length, name in shown)


def add_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("--model", required=True,
                   help="an exported Hugging Face folder or SavedModel folder, or one of our checkpoints (ckpt-N "
                        "prefix, checkpoints folder or a task's --output_dir, with the model flags): local or s3://")
    g.add_argument("--task_name", required=True, choices=list(predict_heads()))
    g.add_argument("--predict_file", required=True,
                   help="GLUE: a TSV in the task's layout with labels (e.g. dev.tsv, dev_matched.tsv); squad: a SQuAD "
                        "JSON file (answers optional: without them, no metrics): local or s3://")
    g.add_argument("--output_dir", required=True, help="where predictions and metrics.json go: local or s3://")
    g.add_argument("--vocab_file", help="WordPiece vocab.txt (default: the exported folder's own)")
    g.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=None,
                   help="lower-case and strip accents (default: the exported folder's tokenizer_config.json, else no)")
    add_model_flags(g, required=False)
    g.add_argument("--max_seq_length", type=int, help=_seq_length_help())
    g.add_argument("--predict_batch_size", type=int, default=32)
    bool_flag(g, "version_2_with_negative", "SQuAD 2.0: questions may have no answer")
    g.add_argument("--null_score_diff_threshold", type=float, default=0.0)
    g.add_argument("--doc_stride", type=int, default=128)
    g.add_argument("--max_query_length", type=int, default=64)
    g.add_argument("--n_best_size", type=int, default=20)
    g.add_argument("--max_answer_length", type=int, default=30)


def model_kind(uri: str) -> str:
    """'savedmodel', 'hf' or 'checkpoint', from the files there (no TensorFlow)."""
    if storage.exists(storage.join(uri, "saved_model.pb")):
        return "savedmodel"
    if storage.exists(storage.join(uri, "config.json")) and storage.exists(storage.join(uri, "model.safetensors")):
        return "hf"
    return "checkpoint"


def _read_json(parser: argparse.ArgumentParser, uri: str, flag: str) -> dict:
    try:
        body = json.loads(storage.read_bytes(uri).decode())
    except (storage.StorageError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        parser.error(f"--{flag}: {uri}: unreadable ({exc})")
    if not isinstance(body, dict):
        parser.error(f"--{flag}: {uri}: not a JSON object")
    return body


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The model is there and has the task's head, the tokenizer is known, the file exists; sets args.bert_config,
    args.model_kind, args.vocab_file, args.do_lower_case and args.max_seq_length."""
    from bert_trainer.model.config import BertConfig, ConfigError  # noqa: PLC0415 - as resolve_config

    head = predict_heads()[args.task_name]
    if args.max_seq_length is None:
        args.max_seq_length = head.predict_seq_length
    require_positive(parser, args, ("max_seq_length", "predict_batch_size", "doc_stride", "max_query_length",
                                    "n_best_size", "max_answer_length"))
    if head.predict_check:
        head.predict_check(parser, args)
    if not storage.exists(args.predict_file):
        parser.error(f"--predict_file: {args.predict_file}: not found")
    try:
        args.model_kind = model_kind(args.model)
    except storage.StorageError as exc:
        parser.error(f"--model: {exc}")
    given = next((f for f in MODEL_FLAGS if getattr(args, f)), None)
    meta = None
    if args.model_kind == "checkpoint":
        from bert_trainer.tasks.export import check_checkpoint  # noqa: PLC0415

        check_checkpoint(parser, args.model, flag="model")
        if not given:
            parser.error(f"--model: {args.model} is a checkpoint: name its architecture with --bert_model, "
                         "--bert_config_json or --bert_config_file")
        args.bert_config = resolve_config(parser, args)
    else:
        if given:
            parser.error(f"--{given}: {args.model} is an exported {args.model_kind} folder, its config.json says "
                         "what it is; the model flags are for a checkpoint")
        meta = args.model if args.model_kind == "hf" else storage.join(args.model, "assets")
        config = _read_json(parser, storage.join(meta, "config.json"), "model")
        try:
            args.bert_config = BertConfig.from_dict(config)
        except ConfigError as exc:
            parser.error(f"--model: {storage.join(meta, 'config.json')}: {exc}")
        arch = (config.get("architectures") or [None])[0]
        if arch != needs(args.task_name):
            parser.error(f"--model: {args.model} is a {arch}; --task_name {args.task_name} needs a "
                         f"{needs(args.task_name)} (a model fine-tuned for it)")
        labels = len(config.get("id2label") or {})
        wanted = head.predict_labels(args.task_name) if head.predict_labels else None
        if wanted is not None and labels != wanted:
            parser.error(f"--model: {args.model} has {labels} labels; {args.task_name} has {wanted}")
    if args.max_seq_length > args.bert_config.max_position_embeddings:
        parser.error(f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings "
                     f"{args.bert_config.max_position_embeddings}")
    if not args.vocab_file:
        if meta is None or not storage.exists(storage.join(meta, "vocab.txt")):
            parser.error(f"--vocab_file: required: {args.model} ships no vocab.txt")
        args.vocab_file = storage.join(meta, "vocab.txt")
    elif not storage.exists(args.vocab_file):
        parser.error(f"--vocab_file: {args.vocab_file}: not found")
    if args.do_lower_case is None:
        tokenizer = storage.join(meta, "tokenizer_config.json") if meta else None
        args.do_lower_case = bool(tokenizer and storage.exists(tokenizer)
                                  and _read_json(parser, tokenizer, "model").get("do_lower_case"))
    check_output_dir(parser, args.output_dir)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.finetune.tokenization import VocabError  # noqa: PLC0415
    from bert_trainer.tasks.predict import driver  # noqa: PLC0415 - imports TensorFlow

    return run_guarded(parser, NAME, lambda: driver.run(args), stoppable=False,
                       input_errors=(driver.PredictMismatch, *driver.prediction(args.task_name).INPUT_ERRORS, VocabError))
