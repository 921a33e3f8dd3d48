"""``prepare-data``: the driver. Plan (every rank the same), then make this
process's shards: all of them over a process pool, or under Horovod/mpirun the
shards ``rank, rank + size, ...`` of the plan. Rank 0 reports shards done in
progress.json (and to the operator) and writes results.json once every shard of
every rank exists. TensorFlow is never imported (records are encoded by hand),
except to ask Horovod for the rank when no launcher variable gives it.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import multiprocessing
import os
import time

from bert_trainer import output_lock, storage
from bert_trainer.prep import records, shards, worker
from bert_trainer.prep.instances import Settings
from bert_trainer.reports import ReportWriter
from bert_trainer.scratch import run_scratch_dir

log = logging.getLogger(__name__)

RANK_ENV = (("HOROVOD_RANK", "HOROVOD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
            ("PMI_RANK", "PMI_SIZE"), ("PMIX_RANK", "PMIX_SIZE"))


class HorovodMissing(RuntimeError):
    """--horovod without a launcher's rank variables and without a working Horovod."""


class Rank:
    rank = 0
    size = 1


def world(use_horovod: bool) -> Rank:
    """This process's rank and the world size: from the launcher's variables (mpirun,
    horovodrun), else from Horovod itself (imports TensorFlow)."""
    w = Rank()
    if not use_horovod:
        return w
    for rank_var, size_var in RANK_ENV:
        if rank_var in os.environ and size_var in os.environ:
            w.rank, w.size = int(os.environ[rank_var]), int(os.environ[size_var])
            return w
    from bert_trainer.dist import HorovodUnavailable, create_world  # noqa: PLC0415 - imports TF and Horovod

    try:
        hvd_world = create_world(True)
    except HorovodUnavailable as exc:
        raise HorovodMissing(str(exc)) from exc
    w.rank, w.size = hvd_world.rank, hvd_world.size
    return w


def stage_inputs(input_dir: str, entries: list[storage.Entry], scratch: str, output_dir: str) -> list[str]:
    """Local paths of the input files (downloaded once from s3://, size-checked);
    hidden files and anything under the output folder are left out. A key that would
    land outside the staging folder is refused (storage.UnsafeKey, exit 2 naming
    --input_dir) before anything is downloaded, whatever its segments look like."""
    if not storage.is_s3(input_dir):
        out_abs = None if storage.is_s3(output_dir) else os.path.abspath(output_dir) + os.sep
        return [e.uri for e in entries if not _hidden(e) and not (out_abs and os.path.abspath(e.uri).startswith(out_abs))]
    targets = storage.local_paths(os.path.join(scratch, "inputs"), entries, flag="input_dir")
    paths = []
    for e, target in zip(entries, targets):
        if _hidden(e):
            continue
        if not (os.path.isfile(target) and os.path.getsize(target) == e.size):
            storage.download_file(e.uri, target)
        paths.append(target)
    return paths


def _hidden(entry: storage.Entry) -> bool:
    return any(part.startswith((".", "_")) for part in entry.relpath.split("/"))


def finished(output_dir: str) -> set[str]:
    """Names of the shards already published under output_dir/{training,test}."""
    done = set()
    for split in ("training", "test"):
        for e in storage.list_files(storage.join(output_dir, split)):
            if "/" not in e.relpath and not e.relpath.startswith("."):
                done.add(f"{split}/{e.relpath}")
    return done


def remove_stale_temps(output_dir: str, units: list[shards.Unit]) -> int:
    """Half-written temp files of this process's shards left by a killed run."""
    if storage.is_s3(output_dir):
        return 0
    removed = 0
    for unit in units:
        d = os.path.join(output_dir, unit.split)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.startswith(worker.temp_prefix(unit)):
                os.remove(os.path.join(d, name))
                removed += 1
    return removed


def _scan_all(files: list[str], pool, input_format: str) -> list[tuple[str, list[tuple[int, int]]]]:
    scan = functools.partial(shards.scan_file, input_format=input_format)
    return list(pool.imap(scan, files, chunksize=4)) if pool else [scan(f) for f in files]


def format_counts(scanned: list[tuple[str, list[tuple[int, int]]]]) -> dict[str, int]:
    """Input files per format (what --input_format auto chose), for the log and results.json."""
    return dict(sorted(collections.Counter(fmt for fmt, _ in scanned).items()))


class Progress:
    """Rank 0's progress (step = shards done of totalSteps), at most every `every_s` seconds unless final."""

    def __init__(self, enabled: bool, output_dir: str, units: list[shards.Unit], every_s: float = 5.0) -> None:
        self.output_dir, self.units, self.every_s = output_dir, units, every_s
        self.reports = ReportWriter(output_dir, chief=enabled)
        self.expected = {f"{u.split}/{u.name}" for u in units}
        self.start, self.last = time.monotonic(), 0.0

    def done(self) -> int:
        return len(finished(self.output_dir) & self.expected)

    def report(self, final: bool = False, done: int | None = None) -> int:
        if not self.reports.chief or (not final and time.monotonic() - self.last < self.every_s):
            return -1
        self.last = time.monotonic()
        done = self.done() if done is None else done
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        self.reports.progress({"step": done, "totalSteps": len(self.units),
                               "etaSeconds": round((len(self.units) - done) / rate, 1) if rate > 0 else None},
                              final=final)
        return done


def shard_totals(output_dir: str, units: list[shards.Unit]) -> tuple[dict[str, int], int]:
    """The counts of every planned shard, summed from the counts each was published with (so a
    resumed run counts the shards an earlier run made too), and how many shards have none (made by a
    version that kept no counts)."""
    totals = dict.fromkeys(worker.COUNT_KEYS, 0)
    missing = 0
    for unit in units:
        counts = _read_counts(output_dir, unit)
        if counts is None:
            missing += 1
            continue
        for key in totals:
            totals[key] += counts[key]
    return totals, missing


def _read_counts(output_dir: str, unit: shards.Unit) -> dict[str, int] | None:
    data = storage.read_if_exists(worker.counts_uri(output_dir, unit))
    try:
        return None if data is None else {key: int(json.loads(data)[key]) for key in worker.COUNT_KEYS}
    except (ValueError, KeyError, TypeError):
        return None


def run(args: argparse.Namespace, tokens: list[str], entries: list[storage.Entry]) -> dict:
    """Everything after flag validation; raises shards.InputError / StorageError for bad input
    before anything is written. Rank 0 holds --output_dir (output_lock) while shards are made."""
    w = world(args.horovod)
    t0 = time.perf_counter()
    scratch = run_scratch_dir(args.local_dir, f"prepare:{args.input_dir}->{args.output_dir}", w.rank)
    files = stage_inputs(args.input_dir, entries, scratch, args.output_dir)
    if not files:
        raise shards.InputError(f"{args.input_dir}: no input files")
    settings = Settings(args.max_seq_length, args.max_predictions_per_seq, args.masked_lm_prob, args.short_seq_prob,
                        args.dupe_factor, args.do_whole_word_mask)
    job = worker.Job(tuple(files), args.output_dir, scratch, tuple(tokens), args.do_lower_case, settings,
                     args.random_seed)
    workers = args.num_workers or (1 if args.horovod else os.cpu_count() or 1)
    if workers > 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker; the pool is the parallelism
    records.crc32c_implementation()  # chosen once here, so the forked workers inherit it instead of each probing
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(workers, initializer=worker.init, initargs=(job,)) if workers > 1 else None
    try:
        ranges = _scan_all(files, pool, args.input_format)
        corpus = os.path.basename(args.output_dir.rstrip("/")) or "corpus"
        units = shards.plan(ranges, args.n_shards, args.test_split, args.random_seed, corpus)
        # Held from the first write on (bad input has failed by now, with nothing written), and only once the
        # pool has forked: a fork must not copy the lease's renewal thread in the middle of a request.
        with output_lock.hold(args.output_dir, task="prepare-data", chief=w.rank == 0):
            return _make_shards(args, w, job, ranges, units, pool, workers, t0)
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _make_shards(args: argparse.Namespace, w: Rank, job: worker.Job, ranges: list[tuple[str, list[tuple[int, int]]]],
                 units: list[shards.Unit], pool, workers: int, t0: float) -> dict:
    files = job.files
    mine = units[w.rank::w.size]
    done_before = finished(args.output_dir)
    todo = [u for u in mine if f"{u.split}/{u.name}" not in done_before]
    stale = remove_stale_temps(args.output_dir, todo)
    formats = format_counts(ranges)
    log.info("event=plan files=%d formats=%s documents=%d shards=%d rank=%d size=%d mine=%d skipped=%d "
             "stale_temps=%d workers=%d", len(files), ",".join(f"{k}:{v}" for k, v in formats.items()),
             sum(len(r) for _, r in ranges), len(units), w.rank, w.size, len(mine), len(mine) - len(todo), stale,
             workers)
    progress = Progress(w.rank == 0, args.output_dir, units)
    progress.report(final=True)
    made = dict.fromkeys(worker.COUNT_KEYS, 0)  # this run's (this rank's) work, for the rates
    if pool is None:
        worker.init(job)
        results = map(worker.make_shard, todo)
    else:
        results = pool.imap_unordered(worker.make_shard, todo)
    for res in results:
        for k in made:
            made[k] += res[k]
        log.info("event=shard_done split=%s index=%d instances=%d seconds=%.2f", res["split"], res["index"],
                 res["instances"], res["seconds"])
        progress.report()
    seconds = time.perf_counter() - t0
    if w.rank != 0:
        return made
    while progress.report(final=True) < len(units):  # wait for the other ranks' shards
        time.sleep(2.0)
    totals, missing = shard_totals(args.output_dir, units)
    summary = {
        "shards": len(units), "trainingShards": sum(u.split == "training" for u in units),
        "testShards": sum(u.split == "test" for u in units), "skippedShards": len(mine) - len(todo),
        **totals, "countsCover": "all shards" if not missing else
        f"{len(units) - missing} of {len(units)} shards ({missing} published without counts by an earlier version)",
        "madeShards": len(todo), "seconds": round(seconds, 3),
        "sentencesPerSecond": round(made["sentences"] / seconds, 1) if seconds > 0 else None,
        "instancesPerSecond": round(made["instances"] / seconds, 1) if seconds > 0 else None,
        "training": storage.join(args.output_dir, "training"), "test": storage.join(args.output_dir, "test"),
        "worldSize": w.size, "workers": workers, "inputFormats": formats,
    }
    return progress.reports.results(summary)
