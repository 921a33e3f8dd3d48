"""`kubectl bertjob watch`: a job's progress, live, until it ends.

On a terminal it is the same bar `bertjob run --local` draws (local/display.py), fed from the same
`status.progress` block, redrawn on each watch event. Into a pipe or a log file it writes one line per change of
what it would show, so a CI log holds every figure once and nothing else. The exit code is the job's outcome:
0 for Succeeded, 1 for Failed.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .client import EXIT_FAILED, EXIT_OK, PluginError, Target
from .follow import job_states
from ..status import TERMINAL_PHASES
from ..terminal import one_line
from ..untrusted import mapping, text, whole
from .wait import failure_text


def status_line(name: str, status: dict[str, Any]) -> str:
    """`bert: Running 45% phase1 45/90 loss 7.250 812 seq/s eta 12s`: the phase and the figures a user watches."""
    from ..local.display import progress_text  # noqa: PLC0415 - display needs tqdm, the [operator] extra

    status = mapping(status)
    progress = mapping(status.get("progress"))
    parts = [f"{name}:", _phase(status)]
    percent = whole(progress.get("percent"), 0, 100)
    if percent is not None:
        parts.append(f"{percent}%")
    if progress:
        parts.append(progress_text(progress))
    elif status.get("currentStage"):
        parts.append(str(status["currentStage"]))
    return one_line(" ".join(part for part in parts if part))


def _phase(status: Any) -> str:
    """The status's phase; Pending while it has none, `<invalid>` for one that is not a string."""
    phase = mapping(status).get("phase")
    return "Pending" if phase is None or phase == "" else text(phase) or "<invalid>"


class ProgressView:
    """The bar on a terminal, a line per change elsewhere."""

    def __init__(self, name: str, stream: TextIO, interactive: bool | None = None) -> None:
        self.name = name
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.last_line = ""
        self.last_phase: str | None = None
        self.display: Any = None
        if self.interactive:
            from ..local.display import Display  # noqa: PLC0415 - display needs tqdm, the [operator] extra

            self.display = Display(stream=stream, interactive=True)
            self.display.start(name)

    def update(self, status: dict[str, Any]) -> None:
        if self.display is None:
            line = status_line(self.name, status)
            if line != self.last_line:
                print(line, file=self.stream, flush=True)
                self.last_line = line
            return
        phase = _phase(status)
        if phase != self.last_phase:
            self.display.line(f"{self.name}: {phase}")
            self.last_phase = phase
        self.display.progress(status)

    def close(self) -> None:
        if self.display is not None:
            self.display.close()


def run(target: Target, name: str, interactive: bool | None = None) -> int:
    view = ProgressView(name, sys.stdout, interactive)
    try:
        for job in job_states(target, name, None):
            if job is None:  # no deadline: cannot happen, but never loop on it
                break
            status = mapping(job.get("status"))
            view.update(status)
            phase = text(status.get("phase"))
            if phase in TERMINAL_PHASES:
                view.close()
                if phase == "Failed":
                    print(f"{name}: Failed{failure_text(job)}", file=sys.stderr)
                    return EXIT_FAILED
                return EXIT_OK
    finally:
        view.close()
    raise PluginError(f"watching {name} ended unexpectedly")
