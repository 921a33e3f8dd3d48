"""A copy of the trainer's log in a file, for a platform's log shipper (``BERT_TRAINER_LOG_FILE``).

Why a file: a rank's output reaches only mpirun's (the launcher container's stdout), and a sidecar cannot read
another container's stdout; a log-shipping sidecar (examples/templates/fluent-bit-sidecar.yaml) tails files on a
volume it shares with the worker container, where the ranks run. ``{rank}`` in the path is the process's MPI rank,
so ranks on one pod never write the same file. A path that cannot be opened is a warning, never a failed run.
"""

from __future__ import annotations

import logging
import os
import sys

LOG_FILE_ENV = "BERT_TRAINER_LOG_FILE"
#: Where MPI implementations and Horovod put the process's rank.
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "HOROVOD_RANK")


def rank() -> str:
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return value
    return "0"


def add_log_file(pattern: str, formatter: logging.Formatter) -> str | None:
    """Log to the file `pattern` names (``{rank}`` replaced) as well; the path, or None when it cannot be opened."""
    path = pattern.replace("{rank}", rank())
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        print(f"warning: {LOG_FILE_ENV}: cannot write {path!r}: {exc.strerror}; logging to stderr only", file=sys.stderr)
        return None
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)
    return path
