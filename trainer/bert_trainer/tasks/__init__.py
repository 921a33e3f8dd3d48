"""The tasks behind ``python -m bert_trainer <task>``, one module (or package) a task, listed once in TASKS.

A task module declares what :class:`Task` names: its subcommand and help, its flags
(``add_arguments``), ``validate`` (exit 2 through ``parser.error`` naming the flag,
without importing TensorFlow, so a bad flag fails in a second; it may record what it
resolved on ``args``, e.g. the BertConfig, so ``run`` does not read it again) and
``run`` (the work, through :func:`bert_trainer.tasks.common.run_guarded`'s exits).
``cli.build_parser`` and ``cli.main`` iterate TASKS: adding a task is its module and
one entry here. The heavy (TensorFlow) code of a task lives in its ``driver`` module,
imported by ``run`` only.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from bert_trainer.tasks import export, glue, launch, predict, prepare_data, pretrain, squad, sync


class Task(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def validate(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None: ...
    def run(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int: ...


#: In the order a pipeline runs them; the subcommands are listed in this order.
TASKS: tuple[Task, ...] = (pretrain, prepare_data, glue, squad, export, predict, sync, launch)
