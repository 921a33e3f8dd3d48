"""Training checkpoints: write locally, publish to the output URI atomically, resume from the newest good one.

Layout under ``<output_dir>/checkpoints/``: ``ckpt-<step>.index`` and
``ckpt-<step>.data-*`` (tf.train.Checkpoint.write format), then
``ckpt-<step>.manifest.json`` naming those files and their sizes. The step number is
in the name so "newest" is a listing, with no separate state file to keep consistent
in an object store.

Why a manifest, written last: an object store has no rename, so a checkpoint is
several uploads, and a crash (or a full disk, or a bad copy) between them leaves a
checkpoint that TensorFlow cannot read, which used to fail every rerun. A checkpoint
counts as published only once its manifest exists and every file it names is there
with its size. On resume the candidates are tried newest first; one that is
incomplete, or that TensorFlow cannot restore (a garbage index, a truncated data
file: the bundle format checks each tensor's CRC32C), is logged as
``event=checkpoint_skipped`` and the next older one is tried.

Checkpoints without a manifest (written before manifests existed) are still
accepted, after every checkpoint that has one: they are tried last, newest first,
and used if TensorFlow restores them.

Retention (``keep``, the trainer's ``--keep_checkpoint_max``): after each save is
published, checkpoints beyond the newest ``keep`` are deleted, locally and under the
output location, manifest first (so no reader takes a half-deleted one for published).
The one this run resumed from is never deleted (it is the fallback should the new ones
turn out unreadable), nor the newest (the final one, at the end). BERT-Large with LAMB
writes about 4 GB per checkpoint; kept all, a run of 7,820 steps saved every 100 leaves
some 300 GB.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re

import tensorflow as tf

from bert_trainer import storage

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^(?:.*/)?(?P<stem>(?:ckpt|model\.ckpt)-(?P<step>\d+))\.index$")
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_RE = re.compile(r"^(?P<stem>(?:ckpt|model\.ckpt)-(?P<step>\d+))" + re.escape(MANIFEST_SUFFIX) + "$")


class CheckpointError(storage.StorageError):
    """There are checkpoints to resume from, but none can be restored; the message names each and why."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One checkpoint under a folder: its step, prefix URI, the files its manifest names
    (None for a checkpoint written without one) and why it cannot be used (None if it can)."""

    step: int
    uri: str
    files: dict[str, int] | None
    problem: str | None


def manifest_uri(prefix_uri: str) -> str:
    return prefix_uri + MANIFEST_SUFFIX


def _check_manifest(uri: str, listed: dict[str, int]) -> tuple[dict[str, int] | None, str | None]:
    """The files a manifest names, and the first way the listing disagrees with it."""
    try:
        files = json.loads(storage.read_bytes(uri))["files"]
        if not isinstance(files, dict) or not files or not all(isinstance(v, int) for v in files.values()):
            raise ValueError("no file sizes")
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"manifest_unreadable ({exc})"
    for name, size in sorted(files.items()):
        if name not in listed:
            return files, f"missing_file ({name})"
        if listed[name] != size:
            return files, f"size_mismatch ({name}: {listed[name]} bytes, the manifest says {size})"
    return files, None


def list_checkpoints(dir_uri: str) -> list[Candidate]:
    """Every checkpoint directly under ``dir_uri``, in the order to try them: those with a
    manifest newest first, then those without one newest first. Files are listed once."""
    listed = {e.relpath: e.size for e in storage.list_files(dir_uri) if "/" not in e.relpath}
    stems: dict[str, int] = {}
    for name in listed:
        if m := (CKPT_RE.match(name) or MANIFEST_RE.match(name)):
            stems[m.group("stem")] = int(m.group("step"))
    with_manifest, without = [], []
    for stem, step in stems.items():
        uri = storage.join(dir_uri, stem)
        if stem + MANIFEST_SUFFIX in listed:
            files, problem = _check_manifest(manifest_uri(uri), listed)
            with_manifest.append(Candidate(step, uri, files, problem))
        elif stem + ".index" in listed:
            without.append(Candidate(step, uri, None, None))
    newest_first = lambda c: -c.step  # noqa: E731
    return sorted(with_manifest, key=newest_first) + sorted(without, key=newest_first)


def newest_checkpoint(prefix_uri: str) -> tuple[int, str] | None:
    """(step, checkpoint prefix URI) of the newest usable checkpoint under ``prefix_uri``: one
    whose manifest matches its files, else (none has one) the newest written without a manifest."""
    for candidate in list_checkpoints(prefix_uri):
        if candidate.problem is None:
            return candidate.step, candidate.uri
    return None


def fetch_checkpoint(prefix_uri: str, scratch_dir: str, files: dict[str, int] | None = None) -> str:
    """Make a TF checkpoint (index + data shards) readable locally; returns the local prefix.

    `files` (a manifest's names and sizes) says exactly what to fetch, and each download is
    checked against its size; without it, every file of the checkpoint's stem is fetched.
    """
    if not storage.is_s3(prefix_uri):
        return prefix_uri
    parent, stem = prefix_uri.rsplit("/", 1)
    local_dir = os.path.join(scratch_dir, "fetched")
    entries = [e for e in storage.list_files(parent) if "/" not in e.relpath and e.relpath.startswith(stem + ".")
               and not e.relpath.endswith(MANIFEST_SUFFIX) and (files is None or e.relpath in files)]
    for entry, target in zip(entries, storage.local_paths(local_dir, entries)):
        storage.download_file(entry.uri, target)
        if files is not None and os.path.getsize(target) != files[entry.relpath]:
            raise storage.StorageError(f"{entry.uri}: downloaded {os.path.getsize(target)} bytes, "
                                       f"the manifest says {files[entry.relpath]}")
    return os.path.join(local_dir, stem)


class CheckpointManager:
    """Saves ``tf.train.Checkpoint`` objects locally and publishes them to ``output_dir``."""

    def __init__(self, checkpoint: tf.train.Checkpoint, output_dir: str, scratch_dir: str,
                 keep_local: int = 3, keep: int = 0) -> None:
        self.checkpoint = checkpoint
        self.remote_dir = storage.join(output_dir, "checkpoints")
        self.local_dir = self.remote_dir if not storage.is_s3(output_dir) else os.path.join(scratch_dir, "checkpoints")
        self.scratch_dir = scratch_dir
        self.keep_local = keep_local
        #: How many checkpoints to keep under the output location (0: all).
        self.keep = keep
        #: The step restore_newest resumed from: never deleted by retention.
        self.resumed_from: int | None = None

    def save(self, step: int) -> str:
        """Write ckpt-<step>, then its manifest (last); returns its URI under output_dir.

        A manifest already there for this step (a rerun that fell back to an older checkpoint
        reaches the step again) is withdrawn first, so no reader sees it name files being rewritten.
        """
        stem = f"ckpt-{step}"
        uri = storage.join(self.remote_dir, stem)
        storage.delete(manifest_uri(uri))
        os.makedirs(self.local_dir, exist_ok=True)
        self.checkpoint.write(os.path.join(self.local_dir, stem))
        # The data files before the index: a listing that shows the index shows complete data.
        names = sorted((n for n in os.listdir(self.local_dir) if n.startswith(stem + ".") and
                        (n.endswith(".index") or ".data-" in n)),
                       key=lambda n: (n.endswith(".index"), n))
        files = {name: os.path.getsize(os.path.join(self.local_dir, name)) for name in names}
        if storage.is_s3(self.remote_dir):
            for name in names:
                storage.upload_file(os.path.join(self.local_dir, name), storage.join(self.remote_dir, name))
            self._prune_local()
        manifest = {"checkpoint": stem, "step": step, "files": files}
        storage.write_bytes(manifest_uri(uri), json.dumps(manifest, indent=1).encode())
        log.info("event=checkpoint_saved step=%d uri=%s", step, uri)
        if self.keep:
            self.retain(step)
        return uri

    def retain(self, newest: int) -> list[int]:
        """Delete the checkpoints beyond the newest `keep` (never `newest`, never the one resumed from); the steps
        deleted. Only after `newest` is published, so there is always a complete checkpoint to resume from."""
        steps = sorted({c.step for c in list_checkpoints(self.remote_dir)}, reverse=True)
        kept = set(steps[:self.keep]) | {newest} | ({self.resumed_from} if self.resumed_from is not None else set())
        doomed = [step for step in steps if step not in kept]
        if not doomed:
            return []
        listed = [e for e in storage.list_files(self.remote_dir) if "/" not in e.relpath]
        for step in doomed:
            stem = f"ckpt-{step}"
            storage.delete(manifest_uri(storage.join(self.remote_dir, stem)))  # unpublished first
            for entry in listed:
                if entry.relpath.startswith(stem + ".") and not entry.relpath.endswith(MANIFEST_SUFFIX):
                    storage.delete(entry.uri)
            if self.local_dir != self.remote_dir:
                for name in os.listdir(self.local_dir) if os.path.isdir(self.local_dir) else []:
                    if name.startswith(stem + "."):
                        os.remove(os.path.join(self.local_dir, name))
        log.info("event=checkpoints_pruned kept=%s deleted=%s", sorted(kept), doomed)
        return doomed

    def _prune_local(self) -> None:
        """Keep the local scratch copy small: the object store holds the full history."""
        steps = sorted({int(m.group("step")) for n in os.listdir(self.local_dir) if (m := CKPT_RE.match(n))})
        for old in steps[:-self.keep_local]:
            for name in os.listdir(self.local_dir):
                if name.startswith(f"ckpt-{old}."):
                    os.remove(os.path.join(self.local_dir, name))

    def restore_newest(self) -> int | None:
        """Restore everything (weights, optimizer slots, step, loss scale) from the newest checkpoint
        under output_dir that restores; returns its step, or None when there is none.

        Each unusable candidate is logged (``event=checkpoint_skipped ckpt=<uri> reason=...``) and
        the next older one tried; a restore that fails halfway is overwritten whole by the next
        (assert_existing_objects_matched: every variable comes from the checkpoint that succeeds).
        When checkpoints exist but none restores, CheckpointError names them: starting over
        silently would throw the run's progress away.
        """
        skipped = []
        for candidate in list_checkpoints(self.remote_dir):
            reason = candidate.problem
            if reason is None:
                try:
                    local = fetch_checkpoint(candidate.uri, self.scratch_dir, candidate.files)
                    self.checkpoint.read(local).assert_existing_objects_matched()
                except Exception as exc:  # noqa: BLE001 - TF raises OpError, IndexError, AssertionError, ValueError...
                    reason = f"restore_failed ({type(exc).__name__}: {_first_line(exc)})"
            if reason is not None:
                log.warning("event=checkpoint_skipped ckpt=%s reason=%s", candidate.uri, reason)
                skipped.append(f"{candidate.uri}: {reason}")
                continue
            log.info("event=resumed step=%d uri=%s manifest=%s skipped=%d", candidate.step, candidate.uri,
                     "yes" if candidate.files is not None else "no (written before manifests)", len(skipped))
            self.resumed_from = candidate.step
            return candidate.step
        if skipped:
            raise CheckpointError(f"{self.remote_dir}: no checkpoint can be restored ({'; '.join(skipped)}); "
                                  "remove them to start this run over")
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
