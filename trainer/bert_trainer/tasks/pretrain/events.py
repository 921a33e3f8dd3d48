"""TensorBoard event files across a resume: each step once.

A run killed at step K that resumes from its checkpoint at step S < K logs steps
S+1..K again, and TensorBoard then shows two points per step (and a jagged curve).
TensorBoard's own remedy, a SessionLog.START event that makes a reader purge later
steps, is honoured only by some readers; so instead the event files already there
are rewritten, before the new run's writer opens, without the events after S.
Event files are TFRecord files of ``Event`` protos, so the rewrite is a filter.
For ``s3://`` output the remote files are fetched into the local TensorBoard folder
(the one the run uploads from), filtered there and uploaded back.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from bert_trainer import storage

log = logging.getLogger(__name__)


def drop_steps_after(path: str, step: int) -> int:
    """Rewrite one event file keeping the events at or before `step` (the file header is at step 0);
    returns how many were dropped. A record cut short by a kill ends what can be read, and goes too."""
    kept: list[bytes] = []
    dropped = 0
    try:
        for record in tf.data.TFRecordDataset(path):
            raw = record.numpy()
            if tf.compat.v1.Event.FromString(raw).step <= step:
                kept.append(raw)
            else:
                dropped += 1
    except tf.errors.DataLossError:
        dropped += 1
    if dropped:
        tmp = f"{path}.tmp-{os.getpid()}"
        with tf.io.TFRecordWriter(tmp) as writer:
            for raw in kept:
                writer.write(raw)
        os.replace(tmp, path)
    return dropped


def purge_after(step: int, local_dir: str, remote_dir: str | None) -> int:
    """Drop events after `step` from every event file of the run (under `local_dir`, and under
    `remote_dir` when the output is an object store); returns how many were dropped."""
    if remote_dir is not None:
        remote = [e for e in storage.list_files(remote_dir) if ".tfevents." in e.relpath]
        for entry, target in zip(remote, storage.local_paths(local_dir, remote)):
            storage.download_file(entry.uri, target)
    total = 0
    for entry in storage.list_files(local_dir):
        if ".tfevents." not in entry.relpath:
            continue
        dropped = drop_steps_after(entry.uri, step)
        if dropped and remote_dir is not None:
            storage.upload_file(entry.uri, storage.join(remote_dir, entry.relpath))
        total += dropped
    if total:
        log.info("event=tensorboard_purged after_step=%d events=%d dir=%s", step, total, remote_dir or local_dir)
    return total
