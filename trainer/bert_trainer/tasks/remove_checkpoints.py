"""``remove-checkpoints``: delete the checkpoints of a sweep's trials that were not chosen (sweep.keepTrialCheckpoints:
false), run as the tenant by the operator's cleanup Job once the best trial is known.

Only ``<trial folder>/checkpoints/`` goes: each trial's results, reports and exports stay, so its row in the status
and its dev figures can still be checked. The operator renders the folders; this command still refuses any folder
whose last part is not a trial's (``t<k>``), so a mis-rendered argument cannot delete anything else the tenant owns.
Deleting what is already gone is not an error: the Job may run again (a retried pod, a Job recreated after it was
removed) and must reach the same end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

from bert_trainer import storage

NAME = "remove-checkpoints"
HELP = "delete the checkpoints/ folder of each --trial_output (a sweep's trials that were not chosen)"
ORDER = 75
#: The last part of a trial's output folder (the operator's stage name for trial k).
TRIAL_FOLDER = re.compile(r"^t[0-9]{1,3}$")
#: What is removed under each trial's folder: the trainer's checkpoint layout (checkpoints.py).
CHECKPOINTS = "checkpoints"
#: At most this many folders in one run (a sweep has at most 64 trials).
MAX_TRIALS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trial_output", action="append", default=[], metavar="URI",
                        help="a trial's output folder (s3:// or a path ending in /t<k>); repeat per trial")


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.trial_output:
        parser.error("--trial_output: give at least one trial's output folder")
    if len(args.trial_output) > MAX_TRIALS:
        parser.error(f"--trial_output: at most {MAX_TRIALS} folders, got {len(args.trial_output)}")
    for uri in args.trial_output:
        last = uri.rstrip("/").rsplit("/", 1)[-1]
        if not TRIAL_FOLDER.match(last) or (storage.is_s3(uri) and not storage.split_s3(uri)[1].strip("/")):
            parser.error(f"--trial_output: {uri!r} is not a trial's folder (its last part must be t<k>, e.g. "
                         f"s3://bucket/runs/job/glue/t3)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Delete each trial's checkpoints, one progress line per trial on stderr, a JSON summary last on stdout."""
    started = time.monotonic()
    removed: dict[str, dict[str, int]] = {}
    for done, uri in enumerate(args.trial_output, start=1):
        folder = storage.join(uri.rstrip("/"), CHECKPOINTS)
        try:
            entries = storage.list_files(folder)
            for entry in entries:
                storage.delete(entry.uri)
        except storage.StorageError as exc:
            print(json.dumps({"event": "checkpoints_not_removed", "trial_output": uri, "error": str(exc)[:500]}),
                  flush=True)
            print(f"error: {folder}: {exc}", file=sys.stderr, flush=True)
            return 1
        if not storage.is_s3(folder) and os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)  # the folders the files left behind
        removed[uri] = {"files": len(entries), "bytes": sum(entry.size for entry in entries)}
        print(f"remove-checkpoints: {done}/{len(args.trial_output)} {folder}: {len(entries)} files, "
              f"{removed[uri]['bytes'] / 1e6:.1f} MB, {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    print(json.dumps({"event": "checkpoints_removed", "trials": removed}), flush=True)
    return 0
