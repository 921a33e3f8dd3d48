"""`kubectl bertjob`: BertTrainingJobs on a cluster, for the people who run them.

Installed as the console script `kubectl-bertjob` (kubectl finds it on PATH as the plugin `bertjob`); the same
commands are `bertjob get|describe|logs|wait|watch`. The options follow kubectl's: `--kubeconfig` (default
KUBECONFIG, then ~/.kube/config), `--context` (default the current one), `-n/--namespace` (default the context's
namespace, else `default`) and, for get, `-A/--all-namespaces`; they may come before or after the command.

Exit codes: 0 done (a wait met, a watched job Succeeded); 1 the job failed, a wait timed out, nothing to show yet,
the API refused or could not be reached; 2 bad input. Errors are one line on stderr, never a traceback.
This module builds the parser only: the kubernetes client loads when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ..terminal import one_line
from ..version import package_version
from . import wait as wait_command  # its parsers check --for and --timeout while the parser is built
from .client import EXIT_BAD_INPUT, EXIT_OK, PluginError, connect, get_job, list_jobs

PROG = "kubectl-bertjob"


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """kubectl's connection options. On the commands they default to SUPPRESS, so a value given before the command
    is not overwritten by the command's default."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {"default": None}
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)",
                        **default)
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current-context)", **default)
    parser.add_argument("-n", "--namespace", metavar="NS", help="namespace (default: the context's, else default)",
                        **default)


def _command(func: Callable[[Any, argparse.Namespace], int], all_namespaces: bool = False) -> Callable[[argparse.Namespace], int]:
    """A command: connect as the options say, run it, and turn a PluginError into its line and exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            target = connect(getattr(args, "kubeconfig", None), getattr(args, "context", None),
                             getattr(args, "namespace", None),
                             all_namespaces=all_namespaces and getattr(args, "all_namespaces", False),
                             user_agent=f"{PROG}/{package_version()}")
            return func(target, args)
        except PluginError as exc:
            sys.stdout.flush()
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return run


def _get(target: Any, args: argparse.Namespace) -> int:
    from .tables import dump, table  # noqa: PLC0415 - each command's module loads when it runs (tables: the CRD models)

    if args.name and target.namespace is None:
        raise PluginError("-A/--all-namespaces: a job is named within a namespace; give -n NS with a NAME",
                          EXIT_BAD_INPUT)
    jobs = [get_job(target, args.name)] if args.name else list_jobs(target)
    if args.output in ("yaml", "json"):
        sys.stdout.write(dump(jobs, args.output, single=bool(args.name)))
    elif not jobs:
        where = f"in namespace {target.namespace}" if target.namespace else "in any namespace"
        print(f"No BertTrainingJobs found {where}.", file=sys.stderr)
    else:
        sys.stdout.write(table(jobs, wide=args.output == "wide", all_namespaces=target.namespace is None))
    return EXIT_OK


def _describe(target: Any, args: argparse.Namespace) -> int:
    from .describe import describe, job_events  # noqa: PLC0415 - each command's module loads when it runs

    job = get_job(target, args.name)
    sys.stdout.write(describe(job, job_events(target, job)))
    return EXIT_OK


def _logs(target: Any, args: argparse.Namespace) -> int:
    from . import logs  # noqa: PLC0415 - each command's module loads when it runs

    return logs.run(target, args.name, args.stage, args.follow, args.tail)


def _wait(target: Any, args: argparse.Namespace) -> int:
    return wait_command.run(target, args.name, args.goal, args.timeout)


def _watch(target: Any, args: argparse.Namespace) -> int:
    from . import watch  # noqa: PLC0415 - each command's module loads when it runs

    return watch.run(target, args.name)


def _checked(parser_name: str) -> Callable[[str], Any]:
    """An argparse type from one of wait's parsers: bad input is argparse's exit 2, naming the option, before any
    connection is made."""
    parse = getattr(wait_command, parser_name)

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except PluginError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None

    convert.__name__ = parser_name.removeprefix("parse_")
    return convert


def add_commands(sub: Any) -> None:
    """get, describe, logs, wait and watch, on a parser's subcommands (the plugin's, and `bertjob`'s)."""
    get = sub.add_parser("get", help="list BertTrainingJobs, or show one, with their phase, stage and progress")
    get.add_argument("name", nargs="?", metavar="NAME", help="one job (default: all of the namespace)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    get.add_argument("-o", "--output", choices=("wide", "yaml", "json"), default=None,
                     help="wide: also loss, throughput, report age; yaml/json: the objects")
    get.set_defaults(func=_command(_get, all_namespaces=True))

    describe = sub.add_parser("describe", help="a job's stages, conditions, Events, results, artifacts and locations")
    describe.add_argument("name", metavar="NAME")
    describe.set_defaults(func=_command(_describe))

    logs = sub.add_parser("logs", help="the launcher pod's log of a stage (default: the current stage, else the last)")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("--stage", metavar="STAGE", help="e.g. phase1, phase2, squad")
    logs.add_argument("-f", "--follow", action="store_true", help="stream the log until the launcher ends")
    logs.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    logs.set_defaults(func=_command(_logs))

    wait = sub.add_parser("wait", help="wait until a job's phase or condition is as asked (exit 1 at the timeout, "
                                       "or at once when it ends otherwise)")
    wait.add_argument("name", metavar="NAME")
    wait.add_argument("--for", dest="goal", required=True, type=_checked("parse_for"),
                      metavar="phase=PHASE|condition=TYPE[=STATUS]", help="e.g. phase=Succeeded, condition=Ready")
    wait.add_argument("--timeout", default=30.0, type=_checked("parse_duration"),
                      help="how long to wait: 30s (default), 10m, 1h30m; 0: check once; negative: no limit")
    wait.set_defaults(func=_command(_wait))

    watch = sub.add_parser("watch", help="a job's live progress until it ends (exit 0 Succeeded, 1 Failed)")
    watch.add_argument("name", metavar="NAME")
    watch.set_defaults(func=_command(_watch))

    for parser in (get, describe, logs, wait, watch):
        _connection_options(parser, suppress=True)


def add_version(parser: argparse.ArgumentParser, prog: str) -> None:
    parser.add_argument("--version", action="version", version=f"{prog} {package_version()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="BertTrainingJobs on a cluster (bert-operator's kubectl plugin).")
    add_version(parser, PROG)
    _connection_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script `kubectl-bertjob`."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        return EXIT_OK


__all__ = ["add_commands", "build_parser", "main"]
