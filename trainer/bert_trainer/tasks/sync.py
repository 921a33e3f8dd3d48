"""``sync``: stage a dataset (an s3:// prefix or a local dir) into a local dir, as init containers do."""

from __future__ import annotations

import argparse
import json
import sys
import time

from bert_trainer import storage

NAME = "sync"
HELP = "copy an s3:// prefix or local dir to a local dir (skips same-size files)"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True)
    parser.add_argument("--dest", required=True)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Nothing to check before copying: an unreachable --source is found by the copy itself, which names it."""


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    start = time.monotonic()

    def progress(done: int, total: int, copied_bytes: int) -> None:
        print(f"sync: {done}/{total} files, {copied_bytes / 1e6:.1f} MB copied, "
              f"{time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)

    try:
        summary = storage.sync(args.source, args.dest, progress=progress)
    except storage.StorageError as exc:
        parser.error(f"--source: {exc}")
    print(json.dumps({"event": "sync_done", "source": args.source, "dest": args.dest, **summary}), flush=True)
    return 0
