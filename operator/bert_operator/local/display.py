"""What a local run shows in the terminal: Events as lines, progress as a bar.

The bar is fed from the job's status (the same `progress` block the operator
writes from the trainer's reports), so the terminal and `kubectl get btj`
show the same figures. Without a terminal (CI, a log file) the bar becomes a
line per 10% so logs stay readable.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


def eta_text(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_text(progress: dict[str, Any]) -> str:
    """`phase1 40/90 loss 5.21 312 seq/s eta 12s`: the figures a user watches."""
    parts = [str(progress.get("stage", ""))]
    if progress.get("step") is not None and progress.get("totalSteps"):
        parts.append(f"{progress['step']}/{progress['totalSteps']}")
    if isinstance(progress.get("loss"), (int, float)):
        parts.append(f"loss {progress['loss']:.3f}")
    if isinstance(progress.get("sequencesPerSecond"), (int, float)):
        parts.append(f"{progress['sequencesPerSecond']:.0f} seq/s")
    if progress.get("etaSeconds") is not None:
        parts.append(f"eta {eta_text(progress['etaSeconds'])}")
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
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    # EventSink, as the reconciler posts Events
    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        name = (body.get("metadata") or {}).get("name", self.job)
        self.line(f"{name}: {kind} {reason}: {message}")

    def progress(self, status: dict[str, Any]) -> None:
        progress = status.get("progress") or {}
        percent = progress.get("percent")
        if not isinstance(percent, int):
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
