"""Local scratch space: staged inputs, checkpoint staging for s3:// output, fetched weights."""

from __future__ import annotations

import hashlib
import os
import tempfile

# A hyphenated name: a "bert_trainer" folder in a cwd would pass for a namespace package.
SCRATCH_NAME = "bert-trainer-scratch"


def run_scratch_dir(local_dir: str | None, key: str, rank: int) -> str:
    """The same folder for every run of the same work (`key`) and rank, so a restarted
    process finds what it already downloaded; under `local_dir`, else $TMPDIR."""
    base = local_dir or os.path.join(tempfile.gettempdir(), SCRATCH_NAME)
    tag = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = os.path.join(base, tag, f"rank{rank}")
    os.makedirs(path, exist_ok=True)
    return path


def fresh_scratch_dir() -> str:
    """A new, empty folder for this process only (the fine-tuning tasks, which take no --local_dir)."""
    return tempfile.mkdtemp(prefix=f"{SCRATCH_NAME}-")
