"""Command line of ``python -m bert_trainer``.

The flag names are a contract with the operator, which renders these exact command
lines; they mirror NVIDIA's run_pretraining.py so a job reads like the recipe.
Each subcommand is a task of :data:`bert_trainer.tasks.TASKS`. Inputs are validated
before TensorFlow is imported, so a bad flag fails in a second with exit status 2
and a message that names the flag (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from bert_trainer import tasks as registry
from bert_trainer.log_file import LOG_FILE_ENV, add_log_file

#: Structured lines: a timestamp, then key=value pairs (every module logs `event=...` and its fields).
LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every task; its ``subparsers`` default maps a task name to its subparser."""
    parser = argparse.ArgumentParser(prog="python -m bert_trainer",
                                     description="BERT pretraining (NVIDIA recipe) for bert-operator.")
    parser.add_argument("--log_level", default=os.environ.get("BERT_TRAINER_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="task", required=True, metavar="{" + ",".join(t.NAME for t in registry.TASKS) + "}")
    subparsers = {}
    for task in registry.TASKS:
        subparsers[task.NAME] = sub.add_parser(task.NAME, help=task.HELP)
        task.add_arguments(subparsers[task.NAME])
    parser.set_defaults(subparsers=subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format=LOG_FORMAT)
    if os.environ.get(LOG_FILE_ENV):
        add_log_file(os.environ[LOG_FILE_ENV], logging.Formatter(LOG_FORMAT))
    task = next(t for t in registry.TASKS if t.NAME == args.task)
    parser = args.subparsers[args.task]  # errors print the subcommand's usage
    task.validate(parser, args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before a task imports TensorFlow
    return task.run(parser, args)
