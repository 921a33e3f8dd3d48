"""The one writer of a stage's progress.json and results.json, for every task.

Why one: the operator reads these files (and the same bodies pushed over HTTP)
with the field names of :mod:`bert_common.contract`; three writers had three
chances to drift from it. Here progress holds exactly the contract's fields, in
its order, stamped with its clock; each write is logged as an ``event=progress``
or ``event=results`` line and pushed to the operator when it asked for reports.

Both are strict JSON: a NaN figure (an evaluation of 0 batches) is written as null, as the operator stores it.

Only the chief (rank 0) writes: other ranks get a writer that writes nothing,
so no two processes ever write the same object. Standard library only (no
TensorFlow), so data preparation can use it too.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from bert_common.contract import PROGRESS_FIELD_NAMES, PROGRESS_FILE, RESULTS_FILE, utc_now
from bert_trainer import storage
from bert_trainer.progress_push import ProgressPusher, strict_json

log = logging.getLogger(__name__)


def write_json(uri: str, payload: Any) -> None:
    """A JSON document, whole (storage.write_bytes never leaves half a file for a reader)."""
    storage.write_bytes(uri, json.dumps(strict_json(payload), indent=2, ensure_ascii=False, allow_nan=False).encode())


class ReportWriter:
    """Rank 0's progress and results under ``output_dir`` (local or s3://); a no-op elsewhere."""

    def __init__(self, output_dir: str, *, chief: bool) -> None:
        self.output_dir = output_dir
        self.chief = chief
        self.pusher = ProgressPusher.from_env() if chief else None  # None unless the operator asked for reports

    def progress(self, fields: Mapping[str, Any], *, final: bool = False) -> dict[str, Any] | None:
        """Write progress.json from `fields` (contract names only; updatedAt is set here) and push it.

        `final` pushes even within the pusher's rate limit (the last report of a run must arrive).
        Returns the body written, or None on a non-chief rank.
        """
        unknown = set(fields) - set(PROGRESS_FIELD_NAMES)
        if unknown:  # a programming error: the operator would drop these and the CRD would prune them
            raise ValueError(f"progress fields outside the contract: {sorted(unknown)}")
        if not self.chief:
            return None
        stamped = {**fields, "updatedAt": utc_now()}
        body = {name: stamped[name] for name in PROGRESS_FIELD_NAMES if name in stamped}
        storage.write_bytes(storage.join(self.output_dir, PROGRESS_FILE), json.dumps(strict_json(body), allow_nan=False).encode())
        log.info("event=progress %s", " ".join(f"{k}={v}" for k, v in body.items()))
        if self.pusher:
            self.pusher.progress(body, final=final)
        return body

    def results(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """Write results.json (with updatedAt) and push it; returns what was written (`results` off the chief)."""
        if not self.chief:
            return dict(results)
        body = {**results, "updatedAt": utc_now()}
        write_json(storage.join(self.output_dir, RESULTS_FILE), body)
        log.info("event=results %s", json.dumps(body, sort_keys=True))
        if self.pusher:
            self.pusher.results(body)
        return body
