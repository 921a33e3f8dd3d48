"""The tasks behind ``python -m bert_trainer <task>``, one module (or package) a task, found by :func:`discover`.

A task module declares what :class:`Task` names: its subcommand and help, its place
among the subcommands (``ORDER``), its flags (``add_arguments``), ``validate`` (exit 2
through ``parser.error`` naming the flag, without importing TensorFlow, so a bad flag
fails in a second; it may record what it resolved on ``args``, e.g. the BertConfig,
so ``run`` does not read it again) and ``run`` (the work, through
:func:`bert_trainer.tasks.common.run_guarded`'s exits). ``cli.build_parser`` and
``cli.main`` iterate TASKS: adding a task is its module, nothing here. A module of
this package without ``NAME`` (``common``, ``finetuning``) is not a task. The heavy
(TensorFlow) code of a task lives in its ``driver`` module, imported by ``run`` only,
so discovering the tasks imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType
from typing import Iterable, Protocol, cast


class Task(Protocol):
    NAME: str
    HELP: str
    ORDER: int

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def validate(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None: ...
    def run(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int: ...


def discover(path: Iterable[str], package: str) -> tuple[Task, ...]:
    """Every module under `path` (the package `package`) that defines NAME, by ORDER.

    A task without an ORDER, or two at one ORDER, is a programming error: refused here, at import, by name.
    """
    found: list[ModuleType] = []
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda info: info.name):
        module = importlib.import_module(f"{package}.{info.name}")
        if hasattr(module, "NAME"):
            found.append(module)
    unordered = [module.NAME for module in found if not isinstance(getattr(module, "ORDER", None), int)]
    if unordered:
        raise ImportError(f"trainer tasks without an ORDER: {', '.join(unordered)}")
    orders = [module.ORDER for module in found]
    clashes = sorted(module.NAME for module in found if orders.count(module.ORDER) > 1)
    if clashes:
        raise ImportError(f"trainer tasks sharing an ORDER: {', '.join(clashes)}")
    return tuple(cast(Task, module) for module in sorted(found, key=lambda module: module.ORDER))


#: In the order a pipeline runs them (each module's ORDER); the subcommands are listed in this order.
TASKS: tuple[Task, ...] = discover(__path__, __name__)
