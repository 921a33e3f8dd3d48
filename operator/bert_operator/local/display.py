"""What a local run shows in the terminal: Events as lines, progress as a bar.

The bar is fed from the job's status (the same `progress` block the operator
writes from the trainer's reports), so the terminal and `kubectl get btj`
show the same figures. Without a terminal (CI, a log file) the bar becomes a
line per 10% so logs stay readable. What it prints comes from the trainer's reports and the Events'
messages (a trainer's error line): each figure is read typed (untrusted.py) and each line escaped (terminal.py).
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from tqdm import tqdm

from ..terminal import one_line
from ..untrusted import mapping, number, whole

#: Beyond this many hours an ETA is shown in hours, and beyond MAX_ETA_HOURS as a bound: a status is tenant input,
#: and an `etaSeconds` of 1e300 must not print as a 300-digit ETA (or a NaN as a traceback).
HOURS_FROM = 100
MAX_ETA_HOURS = 99999


def eta_text(seconds: Any) -> str:
    """`12s`, `3m05s`, `140h`, at most `>99999h`; empty for anything that is not a finite number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return ""
    value = seconds
    if (isinstance(value, float) and not math.isfinite(value)) or value < 0:
        return ""
    if value >= HOURS_FROM * 3600:
        return f"{int(value // 3600)}h" if value < (MAX_ETA_HOURS + 1) * 3600 else f">{MAX_ETA_HOURS}h"
    seconds = int(value)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def figure(value: float, decimals: int) -> str:
    """A reported figure with `decimals` places, in exponent form once it is too large for that to be short."""
    return f"{value:.{decimals}f}" if abs(value) < 1e9 else f"{value:.3g}"


def progress_text(progress: dict[str, Any]) -> str:
    """`phase1 40/90 loss 5.21 312 seq/s eta 12s`: the figures a user watches (one escaped line; a figure of the
    wrong type is left out, a large one shown short)."""
    progress = mapping(progress)
    stage = progress.get("stage")
    parts = [one_line(stage if isinstance(stage, str) else "")]
    step, total = whole(progress.get("step")), whole(progress.get("totalSteps"))
    if step is not None and total:
        parts.append(f"{step}/{total}")
    loss, rate = number(progress.get("loss")), number(progress.get("sequencesPerSecond"))
    eta = eta_text(progress.get("etaSeconds"))
    if loss is not None:
        parts.append(f"loss {figure(loss, 3)}")
    if rate is not None:
        parts.append(f"{figure(rate, 0)} seq/s")
    if eta:
        parts.append(f"eta {eta}")
    return " ".join(part for part in parts if part)


class Display:
    """One progress bar per job, Events above it."""

    def __init__(self, stream: TextIO = sys.stderr, interactive: bool | None = None) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.bar: tqdm | None = None
        self.job = ""
        self.last_decile = -1

    def start(self, job_name: str) -> None:
        self.close()
        self.job = job_name
        self.last_decile = -1
        if self.interactive:
            self.bar = tqdm(total=100, desc=job_name, unit="%", file=self.stream, dynamic_ncols=True,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

    def line(self, text: str) -> None:
        """One line above the bar, escaped to one line (an Event's message may hold a trainer's error line)."""
        text = one_line(text)
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    # EventSink, as the reconciler posts Events
    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        name = (body.get("metadata") or {}).get("name", self.job)
        self.line(f"{name}: {kind} {reason}: {message}")

    def progress(self, status: dict[str, Any]) -> None:
        progress = mapping(mapping(status).get("progress"))
        percent = whole(progress.get("percent"), 0, 100)
        if percent is None:
            return
        text = progress_text(progress)
        if self.bar is not None:
            self.bar.n = percent
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()
        elif percent // 10 != self.last_decile:
            self.last_decile = percent // 10
            self.line(f"{self.job}: {percent}% {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
