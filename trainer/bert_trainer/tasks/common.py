"""What every task shares: the checks made before TensorFlow loads, and the exits.

The checks fail through ``parser.error`` (exit 2, the subcommand's usage, a message
that names the flag, no traceback), in a second, before a job has spent anything.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Callable, Iterable

from bert_trainer import storage

if TYPE_CHECKING:
    from bert_trainer.model.config import BertConfig

log = logging.getLogger("bert_trainer")


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, names: Iterable[str]) -> None:
    for name in names:
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")


KEEP_HELP = ("checkpoints kept under --output_dir: older ones are deleted after each save (never the one resumed "
             "from, never the newest); 0 keeps all (default 0)")


def check_keep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.keep_checkpoint_max < 0:
        parser.error(f"--keep_checkpoint_max must be 0 (keep all) or positive, got {args.keep_checkpoint_max}")


def model_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BertConfig:
    """The architecture the model flags name, checked to fit --max_seq_length."""
    cfg = resolve_config(parser, args)
    if args.max_seq_length > cfg.max_position_embeddings:
        parser.error(f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings "
                     f"{cfg.max_position_embeddings}")
    return cfg


def resolve_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BertConfig:
    """The architecture the model flags name (tasks without --max_seq_length, e.g. export, use this directly)."""
    # Imported here: the presets come with the operator's API models (pydantic), a tenth of a
    # second that --help, sync and the earlier checks need not pay.
    from bert_trainer.model.config import BertConfig, ConfigError  # noqa: PLC0415

    try:
        if args.bert_model:
            return BertConfig.preset(args.bert_model)
        if args.bert_config_json:
            return BertConfig.from_json(args.bert_config_json)
    except ConfigError as exc:
        parser.error(f"--{'bert_model' if args.bert_model else 'bert_config_json'}: {exc}")
    try:
        return BertConfig.from_json(storage.read_bytes(args.bert_config_file).decode())
    except (storage.StorageError, ConfigError, UnicodeDecodeError) as exc:
        parser.error(f"--bert_config_file: {exc}")
    raise AssertionError("unreachable: parser.error exits")


def check_init_checkpoint(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.init_checkpoint:
        from bert_trainer.model.importer import ImportError_, resolve_init_checkpoint  # noqa: PLC0415

        try:
            resolve_init_checkpoint(args.init_checkpoint)
        except (ImportError_, storage.StorageError) as exc:
            parser.error(f"--init_checkpoint: {exc}")


def check_output_dir(parser: argparse.ArgumentParser, output_dir: str) -> None:
    """--output_dir reachable (s3://) or creatable and writable (local), before anything is written."""
    if storage.is_s3(output_dir):
        try:
            storage.list_files(output_dir)
        except storage.StorageError as exc:
            parser.error(f"--output_dir: {exc}")
        return
    parent = os.path.abspath(output_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        parser.error(f"--output_dir: {output_dir}: cannot create or write here ({parent} is not a "
                     "writable directory)")


def run_guarded(parser: argparse.ArgumentParser, task: str, work: Callable[[], object], *, stoppable: bool,
                horovod_errors: tuple[type[Exception], ...] = (), input_errors: tuple[type[Exception], ...] = ()) -> int:
    """Run a task with the exits every task shares, so they read the same whichever task fails.

    0 done; 143 stopped on SIGTERM/SIGINT after checkpointing (only `stoppable` tasks, whose loops
    check the stop flag; the others keep the default signal handling); 2 bad input, naming the
    flag when the error carries one (`.flag`) or the file and record otherwise (every task's input
    errors include an output held by another run and a listed key that would be staged outside its
    folder); 1 storage failure, or an export (--export_formats) that failed after training.
    """
    from bert_trainer import stop  # noqa: PLC0415
    from bert_trainer.export_layout import ExportFailed  # noqa: PLC0415
    from bert_trainer.output_lock import OutputBusy  # noqa: PLC0415

    if stoppable:
        stop.install()
    input_faults: tuple[type[Exception], ...] = (*input_errors, OutputBusy, storage.UnsafeKey)
    try:
        work()
    except stop.Stopped as exc:
        print(f"{task}: {exc} (run again to resume)", file=sys.stderr)
        return stop.EXIT_STOPPED
    except horovod_errors as exc:
        parser.error(f"--horovod: {exc}")
    except input_faults as exc:
        flag = getattr(exc, "flag", None)
        if flag:
            parser.error(f"--{flag}: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportFailed as exc:
        log.error("event=export_failed %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except storage.StorageError as exc:
        log.error("event=storage_error %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
