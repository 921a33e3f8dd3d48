"""Run ``python -m bert_trainer ARGS`` inside the test process, as a fresh process would see it.

Why: every trainer subprocess pays the TensorFlow import (~6 s on the CI's 2 cores) before it
does anything, and the suite ran about ninety of them. In this process TensorFlow is imported
once; each run then costs only its own tracing and steps. A subprocess stays where the process
itself is what a test checks: a signal (SIGTERM, SIGKILL), a lock or lease held by another
process, orphans, ranks under horovodrun/mpirun, a launcher that execs, and what a fresh
interpreter imports.

:func:`run_trainer` calls :func:`bert_trainer.cli.main` with what a process would have
(the working directory, the environment, an unconfigured root logger, default signal handling,
no stop request, no TensorFlow global seed) and puts everything back afterwards, whatever the
run changed. It answers with a :class:`subprocess.CompletedProcess`, so assertions on the exit
status and on stdout/stderr read as they did: ``SystemExit(n)`` is status ``n``; an exception that
escapes ``main`` is printed as the interpreter would (``Traceback ...``) and is status 1.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Iterator, Mapping

#: What the conftests gave every trainer subprocess (TensorFlow's C++ notices off).
BASE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def run_trainer(args: list[str], *, cwd: str | Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m bert_trainer ARGS`` in this process, from `cwd`, with `env` added to the environment."""
    from bert_trainer import cli  # noqa: PLC0415 - the package the session imports (a worktree's, say)

    out, err = io.StringIO(), io.StringIO()
    with fresh_process_state(cwd, {**BASE_ENV, **(env or {})}):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _exit_status(cli.main, args)
    return subprocess.CompletedProcess([sys.executable, "-m", "bert_trainer", *args], code, out.getvalue(),
                                       err.getvalue())


def _exit_status(main, args: list[str]) -> int:
    """What the interpreter would exit with after ``sys.exit(main(args))``."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    except Exception:  # noqa: BLE001 - a crash is a result here: status 1 and the traceback, as a process shows it
        traceback.print_exc(file=sys.stderr)
        return 1
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def fresh_process_state(cwd: str | Path, env: Mapping[str, str]) -> Iterator[None]:
    """Everything global that ``bert_trainer.cli.main`` reads or changes, set as in a new process for the block
    and restored after it (each item is what the trainer touches: see the comments)."""
    saved_cwd = os.getcwd()
    saved_env = dict(os.environ)
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # stop.install()
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_levels = _logger_levels()
    threads_before = set(threading.enumerate())
    os.environ.update(env)  # read by the tasks (AWS_*, BERTJOB_*); prepare-data sets TOKENIZERS_PARALLELISM
    os.chdir(cwd)
    root.handlers = []  # so that cli.main's logging.basicConfig writes to this run's stderr, at its level
    _reset_trainer_globals()
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = saved_root[0]
        root.setLevel(saved_root[1])
        _restore_logger_levels(saved_levels)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        os.chdir(saved_cwd)
        for key in set(os.environ) - set(saved_env):
            del os.environ[key]
        os.environ.update(saved_env)
        _reset_trainer_globals()
        gc.collect()  # summary writers, datasets and traced functions of the run: their files are closed now
        # A process does not end while a non-daemon thread runs: one left here would be a hang there.
        left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive() and not t.daemon]
        assert not left, f"the run left non-daemon threads running: {left}"


def _reset_trainer_globals() -> None:
    """The process-wide state a trainer run sets: the stop flag and TensorFlow's global seed. Mixed precision
    and Keras' session are reset too when Keras is loaded (the trainer does not use them; a test might)."""
    if "bert_trainer.stop" in sys.modules:
        sys.modules["bert_trainer.stop"]._requested.clear()
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(None)  # the trainer seeds it per rank; a process starts unseeded
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")


def _logger_levels() -> dict[str, tuple[int, bool, bool]]:
    return {name: (logger.level, logger.disabled, logger.propagate)
            for name, logger in logging.Logger.manager.loggerDict.items() if isinstance(logger, logging.Logger)}


def _restore_logger_levels(saved: dict[str, tuple[int, bool, bool]]) -> None:
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            level, logger.disabled, logger.propagate = saved.get(name, (logging.NOTSET, False, True))
            logger.setLevel(level)  # setLevel, not .level: it clears the loggers' cached effective levels
