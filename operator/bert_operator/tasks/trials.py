"""A fine-tuning sweep's trials: which hyperparameters each runs, and how the best is chosen (pure).

Why one trial per MPIJob rather than a loop inside one: a trial is the unit the platform already schedules, queues
(Kueue), restarts, bills (GPU-hours) and limits (policies), and a trial that fails (fine-tuning BERT on small sets
diverges now and then: Dodge et al. 2020) must not take the others with it. The order of the trials is fixed by the
spec alone (learning rates, then seeds, epochs, batch sizes), so trial k is the same on every reconcile, in local
mode and in the status.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

from ..api.errors import FieldError
from ..api.models import MAX_TRIALS, GlueTask, SquadTask, SweepSpec
from .. import untrusted

#: The seed a trial gets when the sweep lists none (the trainer's own default).
DEFAULT_SEED = 12345
#: Each GLUE task's main dev metric (what the paper reports) and the metrics its results hold.
GLUE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "CoLA": ("mcc", ("mcc",)),
    "MRPC": ("f1", ("accuracy", "f1")),
    "MNLI": ("accuracy", ("accuracy",)),
}
SQUAD_METRICS = ("f1", ("exact_match", "f1"))


@dataclass(frozen=True)
class Trial:
    """One combination of a sweep's lists."""

    index: int
    learning_rate: float
    seed: int
    epochs: float
    batch_size: int

    @property
    def name(self) -> str:
        """The trial's stage name, and the suffix of its MPIJob (<job>-t<k>)."""
        return f"t{self.index}"

    def hyperparameters(self) -> dict[str, Any]:
        """As status.trials[].hyperparameters and `describe` show them (the spec's field names)."""
        return {"learningRate": self.learning_rate, "seed": self.seed, "epochs": self.epochs,
                "batchSizePerGpu": self.batch_size}


def trials(task: GlueTask | SquadTask) -> list[Trial]:
    """Every trial of the task's sweep, in order; none without a sweep."""
    sweep = task.sweep
    if sweep is None:
        return []
    grid = itertools.product(sweep.learning_rates, sweep.seeds or [DEFAULT_SEED], sweep.epochs or [task.epochs],
                             sweep.batch_sizes or [task.batch_size_per_gpu])
    return [Trial(index, lr, seed, epochs, batch) for index, (lr, seed, epochs, batch) in enumerate(grid)]


def metrics_of(task: GlueTask | SquadTask) -> tuple[str, tuple[str, ...]]:
    """(the main dev metric, every metric its results hold) of a fine-tuning task."""
    return GLUE_METRICS[task.task_name] if isinstance(task, GlueTask) else SQUAD_METRICS


def selected_metric(task: GlueTask | SquadTask) -> str:
    """The metric that picks the best trial: the sweep's select.metric, else the task's main one."""
    chosen = task.sweep.select.metric if task.sweep is not None else None
    return chosen or metrics_of(task)[0]


def check(field: str, task: GlueTask | SquadTask) -> Iterator[FieldError]:
    """A sweep's rules beyond its fields' own: a trial count within MAX_TRIALS, minSucceeded within it, a metric the
    task's results have."""
    sweep: SweepSpec | None = task.sweep
    if sweep is None:
        return
    count = sweep.trial_count(task.epochs, task.batch_size_per_gpu)
    if count > MAX_TRIALS:
        yield FieldError(f"{field}.sweep", f"makes {count} trials (the product of its lists' lengths); at most "
                                           f"{MAX_TRIALS}")
    if sweep.min_succeeded > count:
        yield FieldError(f"{field}.sweep.minSucceeded", f"must be at most the number of trials ({count}), got "
                                                        f"{sweep.min_succeeded}")
    if sweep.early_stop and not isinstance(task, GlueTask):
        yield FieldError(f"{field}.sweep.earlyStop", "stops a classifier that predicts one class (GLUE); SQuAD has no "
                                                     "majority class to compare with")
    metric = sweep.select.metric
    known = metrics_of(task)[1]
    if metric is not None and metric not in known:
        yield FieldError(f"{field}.sweep.select.metric", f"{_task_label(task)} reports {', '.join(known)} on dev, "
                                                         f"not {metric}")


def _task_label(task: GlueTask | SquadTask) -> str:
    return f"GLUE {task.task_name}" if isinstance(task, GlueTask) else "SQuAD"


def dev_metrics(task: GlueTask | SquadTask, results: Any) -> dict[str, float]:
    """The dev metrics a trial's results.json gives (tenant input: read with untrusted's getters): GLUE's first dev
    split (dev, or MNLI's dev_matched), SQuAD's predict scores."""
    results = untrusted.mapping(results)
    if isinstance(task, GlueTask):
        split = next((untrusted.mapping(results.get(name)) for name in ("dev", "dev_matched")
                      if isinstance(results.get(name), dict)), {})
    else:
        split = untrusted.mapping(results.get("predict"))
    found = {name: untrusted.number(split.get(name)) for name in metrics_of(task)[1]}
    return {name: value for name, value in found.items() if value is not None}


def best(task: GlueTask | SquadTask, scored: dict[int, dict[str, float]]) -> int | None:
    """The index of the best trial among those with the selected metric (`scored`: index -> dev metrics); the lower
    index on a tie, so the choice never flips between reconciles. None when no trial has the metric."""
    metric = selected_metric(task)
    goal = task.sweep.select.goal if task.sweep is not None else "max"
    candidates = [(value, index) for index, metrics in scored.items() if (value := metrics.get(metric)) is not None]
    if not candidates:
        return None
    sign = 1 if goal == "max" else -1
    return min(candidates, key=lambda scored_index: (-sign * scored_index[0], scored_index[1]))[1]


def hopeless(task: GlueTask | SquadTask, first_epochs: dict[int, dict[str, Any]], index: int) -> str | None:
    """Why trial `index` should stop now (sweep.earlyStop), or None: after its first epoch it predicts one class for
    every dev example (the majority-class baseline: its `classes` is 1), while another trial's first epoch is
    earlyStopMargin better by the selected metric. `first_epochs`: index -> the firstEpoch each trial reported."""
    sweep = task.sweep
    if sweep is None or not sweep.early_stop:
        return None
    mine = first_epochs.get(index) or {}
    metric = selected_metric(task)
    value = untrusted.number(mine.get(metric))
    if mine.get("classes") != 1 or value is None:
        return None
    sign = 1 if sweep.select.goal == "max" else -1
    for other, scores in sorted(first_epochs.items()):
        theirs = untrusted.number((scores or {}).get(metric))
        if other != index and theirs is not None and sign * (theirs - value) >= sweep.early_stop_margin:
            return (f"stopped early: after its first epoch it predicts one class for every dev example ({metric} "
                    f"{value:.4g}) while t{other} has {theirs:.4g}")
    return None
