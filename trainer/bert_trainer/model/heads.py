"""The model heads our tasks train, as the exporters and ``predict`` need to know them: declared by each task.

A task that trains a head of its own (pretrain's masked-LM + next-sentence heads, glue's classifier, squad's
span head) says what it is in its module, as ``HEAD = Head(...)``: the variables that hold it (Google's names,
and Hugging Face's for them), the Hugging Face class those make, the SavedModel outputs it serves and, for a
fine-tuned head, how ``predict`` asks for it, checks its flags and reads, runs and writes its file.
:func:`heads` collects them from the task registry, so the exporters (:mod:`~bert_trainer.model.hf_export`,
:mod:`~bert_trainer.model.hf_names`, :mod:`~bert_trainer.model.savedmodel_export`) and ``predict`` name no task.
Standard library only.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Mapping


@dataclass(frozen=True)
class Head:
    #: How messages name it ("the weights hold none of the pretraining, GLUE or SQuAD heads").
    label: str
    #: The Hugging Face class whose state dict the encoder and this head make (config.json's architectures).
    architecture: str
    #: Its variables: our (Google's TF1) name -> the Hugging Face tensor name; stored [out, in], none transposed.
    tensors: Mapping[str, str]
    #: The variables whose presence means the weights hold this head.
    detect: tuple[str, ...]
    #: What its SavedModel's serving_default returns.
    outputs: tuple[str, ...]
    #: The variable whose first dimension is the label count (config.json's id2label), for a classifier.
    labels_from: str | None = None
    #: The --task_name values of ``predict`` that need this head (none: predict does not run it).
    predict_names: tuple[str, ...] = field(default_factory=tuple)
    #: predict's default --max_seq_length for it.
    predict_seq_length: int | None = None
    #: predict's checks of its flags for this head, before TensorFlow (exit 2 through parser.error).
    predict_check: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = None
    #: The label count a --task_name needs of a Hugging Face folder's config.json (None: no labels).
    predict_labels: Callable[[str], int | None] | None = None
    #: The module of its TensorFlow code (``bert_trainer.tasks.<task>.head``), imported only where TensorFlow is:
    #: ``from_weights(cfg, shapes)`` (the model a checkpoint's variables make, for export and predict) and
    #: ``serve(model, input_ids, input_mask, segment_ids)`` (its SavedModel outputs); for predict also
    #: ``build(cfg, task_name)``, ``featurise(args, tokenizer)``, ``finish(args, read, outputs, summary)`` and
    #: ``INPUT_ERRORS`` (what a bad file raises).
    module: str = ""


def heads() -> tuple[Head, ...]:
    """Every task's head, in the task registry's order (pretrain's first)."""
    from bert_trainer import tasks  # noqa: PLC0415 - the task modules import this one for Head

    return tuple(head for task in tasks.TASKS if isinstance(head := getattr(task, "HEAD", None), Head))


def head_module(architecture: str) -> ModuleType:
    """The TensorFlow code (``Head.module``) of the head that makes `architecture`."""
    head = next(head for head in heads() if head.architecture == architecture)
    return importlib.import_module(head.module)


def listing(names: list[str], conjunction: str = "or") -> str:
    """'a, b or c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
