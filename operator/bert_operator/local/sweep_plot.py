"""A picture of a sweep run locally: each trial's dev metric, the best marked, beside the job's status.json.

Why locally only: on a cluster `kubectl bertjob describe` lists the trials; a local run ends at a terminal, where a
bar per trial tells at a glance how much the learning rate and the seed moved the result (the point of running the
paper's protocol rather than one run). Drawn with matplotlib, which the local role installs with the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..untrusted import mapping, number, records, text


def draw(status: dict[str, Any], path: Path) -> Path | None:
    """`path` with a bar chart of the trials' selected metric; None when no trial has it (nothing to show)."""
    best = mapping(mapping(status.get("results")).get("best"))
    metric = text(best.get("metric"))
    trials = records(status.get("trials"))
    shown = [(text(t.get("name")) or "?", number(mapping(t.get("metrics")).get(metric)), t.get("best") is True,
              mapping(t.get("hyperparameters"))) for t in trials] if metric else []
    shown = [item for item in shown if item[1] is not None]
    if not shown:
        return None
    import matplotlib  # noqa: PLC0415 - heavy, and only at the end of a local sweep

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(max(4.0, 0.8 * len(shown) + 2), 3.2))
    labels = [f"{name}\nlr {hyper.get('learningRate'):g}\nseed {hyper.get('seed')}" if isinstance(
        hyper.get("learningRate"), (int, float)) else name for name, _, _, hyper in shown]
    values = [float(value or 0.0) for _, value, _, _ in shown]
    axes.bar(range(len(shown)), values, color=["tab:orange" if chosen else "tab:blue" for _, _, chosen, _ in shown])
    axes.set_xticks(range(len(shown)), labels, fontsize=7)
    axes.set_ylabel(f"dev {metric}")
    axes.set_title(f"{len(shown)} trials, best {best.get('trial')} ({metric} {best.get('value')})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
