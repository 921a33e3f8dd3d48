"""``export``: a checkpoint of ours as a Hugging Face folder (config.json, model.safetensors, vocab.txt,
tokenizer_config.json), so what training produced loads with ``from_pretrained`` outside this project, or
(``--format savedmodel``) as a TensorFlow SavedModel with a ``serving_default`` signature for TF Serving and
Triton (:mod:`bert_trainer.model.savedmodel_export`). The head (pretraining, GLUE, SQuAD) is read from the checkpoint.

This module is the command line (TensorFlow-free); the reading and writing is
:mod:`bert_trainer.tasks.export.driver`, imported only once the flags passed.
"""

from __future__ import annotations

import argparse

from bert_common.contract import EXPORT_FORMATS, EXPORT_HF, EXPORT_TRITON
from bert_trainer import storage
from bert_trainer.flags import add_model_flags, bool_flag
from bert_trainer.tasks.common import check_output_dir, resolve_config, run_guarded

NAME = "export"
HELP = ("write a checkpoint as a Hugging Face BERT folder (config.json, model.safetensors, vocab, tokenizer config) "
        "or a TensorFlow SavedModel (serving_default signature)")
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 50


def add_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("--checkpoint", required=True,
                   help="a ckpt-N prefix, a checkpoints folder or a task's --output_dir (its newest published "
                        "checkpoint): local or s3://")
    g.add_argument("--output_dir", required=True, help="folder to write the exported model to: local or s3://")
    # A Triton repository is written by the fine-tuning task that knows the labels and tokenisation (--export_formats).
    g.add_argument("--format", choices=[f for f in EXPORT_FORMATS if f != EXPORT_TRITON], default=EXPORT_HF,
                   help="hf: a Hugging Face folder (default); savedmodel: a TensorFlow SavedModel whose serving_default "
                        "takes int32 input_ids/input_mask/segment_ids [batch, seq] and returns the head's logits")
    g.add_argument("--vocab_file", help="WordPiece vocab.txt to ship with the model (without it, no tokenizer files; "
                                        "a SavedModel ships them in assets/)")
    bool_flag(g, "do_lower_case", "the vocab is uncased (written to tokenizer_config.json)")
    add_model_flags(g)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checkpoint there, vocab within the model's embeddings, output writable; sets args.bert_config."""
    args.bert_config = resolve_config(parser, args)
    check_checkpoint(parser, args.checkpoint)
    if args.vocab_file:
        try:
            entries = storage.read_bytes(args.vocab_file).decode().splitlines()
        except (storage.StorageError, UnicodeDecodeError) as exc:
            parser.error(f"--vocab_file: {exc}")
        if len(entries) > args.bert_config.vocab_size:  # token ids past the embedding table fail at inference
            parser.error(f"--vocab_file: {args.vocab_file} has {len(entries)} entries, more than the model's "
                         f"vocab_size {args.bert_config.vocab_size}")
    check_output_dir(parser, args.output_dir)


def check_checkpoint(parser: argparse.ArgumentParser, uri: str, flag: str = "checkpoint") -> None:
    """A prefix with its .index, or a folder with ckpt-N.index in it or in its checkpoints/
    (a listing: TensorFlow is not loaded yet)."""
    try:
        if storage.exists(uri + ".index"):
            return
        for folder in (uri, storage.join(uri, "checkpoints")):
            if any("/" not in e.relpath and e.relpath.endswith(".index") for e in storage.list_files(folder)):
                return
    except storage.StorageError as exc:
        parser.error(f"--{flag}: {exc}")
    parser.error(f"--{flag}: {uri}: no checkpoint here (a ckpt-N prefix, or a folder holding ckpt-N.index "
                 "or checkpoints/ckpt-N.index)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.tasks.export import driver  # noqa: PLC0415 - imports TensorFlow

    return run_guarded(parser, NAME, lambda: driver.run(args, args.bert_config), stoppable=False,
                       input_errors=(driver.CheckpointMismatch,))
