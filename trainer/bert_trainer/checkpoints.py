"""Training checkpoints: write locally, mirror to the output URI, resume from the newest.

Layout under ``<output_dir>/checkpoints/``: ``ckpt-<step>.index`` and
``ckpt-<step>.data-*`` (tf.train.Checkpoint.write format). The step number is in
the name so "newest" is a listing, with no separate state file to keep consistent
in an object store.
"""

from __future__ import annotations

import logging
import os
import re

import tensorflow as tf

from bert_trainer import storage

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^(?:.*/)?(?P<stem>(?:ckpt|model\.ckpt)-(?P<step>\d+))\.index$")


def newest_checkpoint(prefix_uri: str) -> tuple[int, str] | None:
    """(step, checkpoint prefix URI) of the highest-numbered ckpt under ``prefix_uri``, if any."""
    best = None
    for entry in storage.list_files(prefix_uri):
        m = CKPT_RE.match(entry.relpath)
        if m and "/" not in entry.relpath:
            step = int(m.group("step"))
            if best is None or step > best[0]:
                best = (step, storage.join(prefix_uri, m.group("stem")))
    return best


def fetch_checkpoint(prefix_uri: str, scratch_dir: str) -> str:
    """Make a TF checkpoint (index + data shards) readable locally; returns the local prefix."""
    if not storage.is_s3(prefix_uri):
        return prefix_uri
    parent, stem = prefix_uri.rsplit("/", 1)
    local_dir = os.path.join(scratch_dir, "fetched")
    for entry in storage.list_files(parent):
        if entry.relpath.startswith(stem + ".") and "/" not in entry.relpath:
            storage.download_file(entry.uri, os.path.join(local_dir, entry.relpath))
    return os.path.join(local_dir, stem)


class CheckpointManager:
    """Saves ``tf.train.Checkpoint`` objects locally and mirrors them to ``output_dir``."""

    def __init__(self, checkpoint: tf.train.Checkpoint, output_dir: str, scratch_dir: str,
                 keep_local: int = 3) -> None:
        self.checkpoint = checkpoint
        self.remote_dir = storage.join(output_dir, "checkpoints")
        self.local_dir = self.remote_dir if not storage.is_s3(output_dir) else os.path.join(scratch_dir, "checkpoints")
        self.scratch_dir = scratch_dir
        self.keep_local = keep_local

    def save(self, step: int) -> str:
        """Write ckpt-<step>; returns its URI under output_dir."""
        os.makedirs(self.local_dir, exist_ok=True)
        local_prefix = self.checkpoint.write(os.path.join(self.local_dir, f"ckpt-{step}"))
        uri = storage.join(self.remote_dir, f"ckpt-{step}")
        if storage.is_s3(self.remote_dir):
            stem = os.path.basename(local_prefix)
            for name in sorted(os.listdir(self.local_dir)):
                if name.startswith(stem + "."):
                    storage.upload_file(os.path.join(self.local_dir, name), storage.join(self.remote_dir, name))
            self._prune_local()
        log.info("event=checkpoint_saved step=%d uri=%s", step, uri)
        return uri

    def _prune_local(self) -> None:
        """Keep the local scratch copy small: the object store holds the full history."""
        steps = sorted({int(m.group("step")) for n in os.listdir(self.local_dir) if (m := CKPT_RE.match(n))})
        for old in steps[:-self.keep_local]:
            for name in os.listdir(self.local_dir):
                if name.startswith(f"ckpt-{old}."):
                    os.remove(os.path.join(self.local_dir, name))

    def restore_newest(self) -> int | None:
        """Restore everything (weights, optimizer slots, step, loss scale) from the newest
        checkpoint under output_dir; returns its step, or None when there is none."""
        found = newest_checkpoint(self.remote_dir)
        if found is None:
            return None
        step, uri = found
        local = fetch_checkpoint(uri, self.scratch_dir)
        self.checkpoint.read(local).assert_existing_objects_matched()
        log.info("event=resumed step=%d uri=%s", step, uri)
        return step
