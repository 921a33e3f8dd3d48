"""Bar charts a run draws for people to look at (matplotlib, headless); the loss curve is the pretraining reporter's.

Here because the trainer's side has matplotlib: `bertjob run --local` (which installs the trainer) draws a sweep's
trials with it, and the operator's image stays without it.
"""

from __future__ import annotations

from typing import Sequence


def bar_chart(path: str, labels: Sequence[str], values: Sequence[float], highlighted: Sequence[bool], ylabel: str,
              title: str) -> str:
    """`path` with one bar per value, the highlighted ones in orange; returns `path`."""
    import matplotlib  # noqa: PLC0415 - heavy, only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(max(4.0, 0.8 * len(values) + 2), 3.2))
    axes.bar(range(len(values)), list(values), color=["tab:orange" if high else "tab:blue" for high in highlighted])
    axes.set_xticks(range(len(values)), list(labels), fontsize=7)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
