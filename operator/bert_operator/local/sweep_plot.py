"""A picture of a sweep run locally: each trial's dev metric, the best marked, beside the job's status.json.

Why locally only: on a cluster `kubectl bertjob describe` lists the trials; a local run ends at a terminal, where a
bar per trial tells at a glance how much the learning rate and the seed moved the result (the point of running the
paper's protocol rather than one run). Drawn by the trainer's matplotlib (bert_trainer.plots), which the local role
installs; the operator's image has neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..untrusted import mapping, number, records, text


def draw(status: dict[str, Any], path: Path) -> Path | None:
    """`path` with a bar chart of the trials' selected metric; None when no trial has it (nothing to show)."""
    best = mapping(mapping(status.get("results")).get("best"))
    metric = text(best.get("metric"))
    if not metric:
        return None
    shown = []
    for trial in records(status.get("trials")):
        value = number(mapping(trial.get("metrics")).get(metric))
        if value is None:
            continue
        given = mapping(trial.get("hyperparameters"))
        rate, seed = number(given.get("learningRate")), given.get("seed")
        label = text(trial.get("name")) or "?"
        shown.append((f"{label}\nlr {rate:g}\nseed {seed}" if rate is not None else label, value,
                      trial.get("best") is True))
    if not shown:
        return None
    from bert_trainer.plots import bar_chart  # noqa: PLC0415 - the trainer's side draws (matplotlib)

    title = f"{len(shown)} trials, best {text(best.get('trial'))} ({metric} {number(best.get('value'))})"
    bar_chart(str(path), [label for label, _, _ in shown], [value for _, value, _ in shown],
              [chosen for _, _, chosen in shown], f"dev {metric}", title)
    return path
