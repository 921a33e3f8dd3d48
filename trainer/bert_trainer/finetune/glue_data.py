"""GLUE examples from the TSV layouts the GLUE download distributes.

CoLA: no header; columns source, label, original label, sentence.
MRPC: header `Quality #1 ID #2 ID #1 String #2 String`; label first.
MNLI: header; sentence1 and sentence2 in columns 8 and 9, gold label last;
dev is split into dev_matched.tsv and dev_mismatched.tsv.
Read through `bert_trainer.storage`, so a data_dir may be local or s3://.
"""

from __future__ import annotations

from dataclasses import dataclass

from bert_trainer import storage


class GlueDataError(ValueError):
    """A GLUE file that does not have its task's layout; the message names file and line."""


@dataclass(frozen=True)
class Example:
    guid: str
    text_a: str
    text_b: str | None
    label: int


@dataclass(frozen=True)
class TaskFormat:
    labels: tuple[str, ...]
    header: bool
    columns: int  # at least this many
    text_a: int
    text_b: int | None
    label: int  # -1: last column
    eval_splits: tuple[str, ...]


TASKS: dict[str, TaskFormat] = {
    "CoLA": TaskFormat(("0", "1"), header=False, columns=4, text_a=3, text_b=None, label=1, eval_splits=("dev",)),
    "MRPC": TaskFormat(("0", "1"), header=True, columns=5, text_a=3, text_b=4, label=0, eval_splits=("dev",)),
    "MNLI": TaskFormat(("contradiction", "entailment", "neutral"), header=True, columns=10, text_a=8, text_b=9,
                       label=-1, eval_splits=("dev_matched", "dev_mismatched")),
}

#: The labels' names, in logit order, as a served model answers them (GLUE's own names; the TSVs spell CoLA's and
#: MRPC's as 0 and 1).
LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "CoLA": ("unacceptable", "acceptable"),
    "MRPC": ("not_equivalent", "equivalent"),
    "MNLI": TASKS["MNLI"].labels,
}


def read_examples(task: str, data_dir: str, split: str) -> list[Example]:
    """Examples of `split` ('train', 'dev', 'dev_matched', ...) of a GLUE task."""
    if task not in TASKS:
        raise GlueDataError(f"--task_name: must be one of {', '.join(TASKS)}, got {task!r}")
    fmt = TASKS[task]
    path = storage.join(data_dir, f"{split}.tsv")
    try:
        raw = storage.read_bytes(path)
    except storage.StorageError as exc:
        raise GlueDataError(f"{path}: cannot read ({exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise GlueDataError(f"{path}:{bad_line}: not UTF-8 text") from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if (fmt.header and number == 1) or not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < fmt.columns:
            raise GlueDataError(
                f"{path}:{number}: expected at least {fmt.columns} tab-separated columns for {task}, got {len(cells)}")
        label = cells[fmt.label].strip()
        if label not in fmt.labels:
            raise GlueDataError(f"{path}:{number}: label must be one of {', '.join(fmt.labels)}, got {label!r}")
        examples.append(Example(
            guid=f"{split}-{number}", text_a=cells[fmt.text_a],
            text_b=cells[fmt.text_b] if fmt.text_b is not None else None, label=fmt.labels.index(label),
        ))
    if not examples:
        raise GlueDataError(f"{path}: no examples (an empty split)")
    return examples
