"""``launch``: wait until every worker's sshd answers, then become the command after ``--`` (mpirun).

Why the launcher waits itself: the rendered MPIJobs ask the MPI Operator to create the launcher only once the
workers are ready (``launcherCreationPolicy: WaitForWorkersReady``), but the MPI Operator (v0.8) evaluates that only
when it creates the launcher Job. An MPIJob created suspended, which every queued MPIJob is (Kueue), gets its
launcher Job at once (no workers yet: 0 of 0 ready), and on admission that Job is resumed in the same sync that
creates the workers (kubeflow/mpi-operator#615, open). mpirun would then ssh to workers still syncing their dataset
and fail; with the launcher's ``backoffLimit: 0`` that fails the stage. So the launcher connects to each host of the
MPI Operator's hostfile on the ssh port until all accept, bounded by ``--timeout_seconds``, and only then execs
mpirun (whose exit status becomes the container's, as before).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from typing import Callable

NAME = "launch"
HELP = "wait until every worker in the MPI hostfile accepts ssh connections, then exec the command after --"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 80
#: Where the MPI Operator mounts the hostfile for Open MPI (it also exports this variable to the launcher).
HOSTFILE_ENV = "OMPI_MCA_orte_default_hostfile"
DEFAULT_HOSTFILE = "/etc/mpi/hostfile"
#: Exit status when the workers never answered: not the trainer's 1 or 2, so the operator does not take it for
#: the job's own failure.
EXIT_WORKERS_UNREACHABLE = 3

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hostfile", default=os.environ.get(HOSTFILE_ENV, DEFAULT_HOSTFILE),
                        help=f"MPI hostfile naming the workers (default ${HOSTFILE_ENV}, else {DEFAULT_HOSTFILE})")
    parser.add_argument("--ssh_port", type=int, default=22, help="port the workers' sshd listens on")
    parser.add_argument("--timeout_seconds", type=float, default=86400.0,
                        help="give up when a worker has not answered for this long (default 86400, a day: a queued "
                             "stage's workers may still be syncing a large dataset)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to exec (mpirun ...)")


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("command: missing; give the command to exec after --, e.g. -- mpirun -np 8 ...")
    if not 0 < args.ssh_port < 65536:
        parser.error(f"--ssh_port: must be a port from 1 to 65535, got {args.ssh_port}")
    if args.timeout_seconds <= 0:
        parser.error(f"--timeout_seconds: must be positive, got {args.timeout_seconds}")
    args.command = command


def hosts(text: str) -> list[str]:
    """Host names of an Open MPI hostfile (`host slots=N` lines; `#` comments)."""
    names = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] not in names:
            names.append(fields[0])
    return names


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether `host:port` accepts a TCP connection (sshd listening; its name resolves)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(names: list[str], port: int, timeout_seconds: float, *, probe: Callable[[str, int], bool] = answers,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Wait until every host answers on `port`; the hosts that never did within `timeout_seconds` (empty: all did)."""
    deadline = clock() + timeout_seconds
    waiting = list(names)
    delay = 0.5
    while waiting:
        waiting = [host for host in waiting if not probe(host, port)]
        if not waiting or clock() >= deadline:
            break
        log.info("event=waiting_for_workers waiting=%d of=%d first=%s", len(waiting), len(names), waiting[0])
        sleep(delay)
        delay = min(delay * 2, 10.0)
    return waiting


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        with open(args.hostfile, encoding="utf-8") as handle:
            names = hosts(handle.read())
    except OSError as exc:
        parser.error(f"--hostfile: {args.hostfile}: {exc.strerror}")
    started = time.monotonic()
    missing = wait_for(names, args.ssh_port, args.timeout_seconds)
    if missing:
        print(f"launch: {len(missing)} of {len(names)} workers did not accept connections on port {args.ssh_port} "
              f"within {args.timeout_seconds:.0f} s: {', '.join(missing[:5])}", file=sys.stderr, flush=True)
        return EXIT_WORKERS_UNREACHABLE
    log.info("event=workers_ready workers=%d seconds=%.1f", len(names), time.monotonic() - started)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(args.command[0], args.command)
    return 0  # pragma: no cover - execvp does not return
