"""A fine-tuning run's final dev metrics as `name=value` lines, for a hyperparameter tuner reading the output.

Why lines on stdout: Katib's StdOut metrics collector (the one that needs nothing of the training code but its
output) wraps the trial's primary container and takes every line matching `name=value` (its default filter:
`([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)`). The metrics of the first dev split (GLUE's dev, MNLI's
dev_matched, SQuAD's predict scores) go by their own names, so an Experiment's objectiveMetricName is `accuracy`,
`f1`, `mcc` or `exact_match` as in status.trials; a further split's are prefixed (`dev_mismatched-accuracy`).
"""

from __future__ import annotations

import math
from typing import Any

#: The results keys that hold dev metrics, the first present being the main split.
SPLITS = ("dev", "dev_matched", "dev_mismatched", "predict")


def metric_lines(results: dict[str, Any]) -> list[str]:
    """The `name=value` lines of a run's results (finite numbers only: a tuner must not read NaN as a score)."""
    lines: list[str] = []
    first = True
    for split in SPLITS:
        scores = results.get(split)
        if not isinstance(scores, dict):
            continue
        prefix = "" if first else f"{split}-"
        first = False
        for name, value in scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                lines.append(f"{prefix}{name}={value:.6g}")
    return lines
