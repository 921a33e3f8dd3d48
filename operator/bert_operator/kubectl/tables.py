"""`kubectl bertjob get`: BertTrainingJobs as a table whose columns are the CRD's own printer columns.

The columns are read from `api.crd.PRINTER_COLUMNS` (what `kubectl get btj` shows), evaluated here with the
subset of JSONPath they use, so the plugin and kubectl can never disagree on a column. The plugin adds what a
printer column cannot compute: the step count and the ETA of the current stage (and, with -o wide, the loss, the
throughput and how old the figures are). Every cell is read as untrusted (untrusted.py) and escaped (terminal.py).
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import yaml

from ..api.crd import PRINTER_COLUMNS
from bert_common.contract import parse_utc
from ..status import TERMINAL_PHASES
from ..terminal import one_line
from ..untrusted import mapping, number, records, text, whole

#: `.a.b`, `.a[0]`, `.a[?(@.type=="Ready")]`: one step of the JSONPath the printer columns use.
_STEP = re.compile(r'\.(?P<key>[A-Za-z0-9_]+)|\[(?P<index>\d+)\]'
                   r'|\[\?\(@\.(?P<field>[A-Za-z0-9_]+)==(?P<q>["\'])(?P<value>[^"\']*)(?P=q)\)\]')


def jsonpath(document: Any, path: str) -> Any:
    """The value at `path` in `document` (None when absent). Only the forms of the printer columns are understood;
    anything else raises ValueError, so a new column in the CRD that this cannot read fails the tests, not a user."""
    value, position = document, 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        position = step.end()
        if step["key"] is not None:
            value = value.get(step["key"]) if isinstance(value, dict) else None
        elif step["index"] is not None:
            index = int(step["index"])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            value = next((item for item in value if isinstance(item, dict)
                          and str(item.get(step["field"])) == step["value"]), None) if isinstance(value, list) else None
    return value


def age(stamp: str | None, now: datetime.datetime) -> str:
    """An RFC 3339 time as kubectl's AGE column writes how long ago it was: 45s, 3m20s, 47m, 5h12m, 3d4h, 120d."""
    if not isinstance(stamp, str) or not stamp:
        return ""
    try:
        seconds = int((now - parse_utc(stamp)).total_seconds())
    except (ValueError, OverflowError):
        return ""
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value, separators=(",", ":"))
        except (RecursionError, ValueError):
            return "<invalid>"
    return str(value)


@dataclass(frozen=True)
class Column:
    """One column: its header and how to compute its cell from a job."""

    header: str
    cell: Callable[[dict[str, Any], datetime.datetime], str]


def _printer_column(spec: dict[str, Any]) -> Column:
    path = spec["jsonPath"]
    if spec["type"] == "date":
        return Column(spec["name"].upper(), lambda job, now: age(jsonpath(job, path), now))
    return Column(spec["name"].upper(), lambda job, now: _text(jsonpath(job, path)))


def _progress(job: dict[str, Any]) -> dict[str, Any]:
    return mapping(mapping(job.get("status")).get("progress"))


def _steps(job: dict[str, Any], now: datetime.datetime) -> str:
    """The current stage's step/total; a sweep's trials ended/total (its trials run side by side)."""
    trials = records(mapping(job.get("status")).get("trials"))
    if trials:
        ended = sum(1 for trial in trials if trial.get("phase") in ("Succeeded", "Failed"))
        return f"{ended}/{len(trials)} trials"
    progress = _progress(job)
    step, total = whole(progress.get("step")), whole(progress.get("totalSteps"))
    return f"{step}/{total}" if step is not None and total else ""


def _eta(job: dict[str, Any], now: datetime.datetime) -> str:
    from ..local.display import eta_text  # noqa: PLC0415 - the local bar's ETA, so both read the same; needs tqdm ([operator])

    if text(mapping(job.get("status")).get("phase")) in TERMINAL_PHASES:
        return ""
    return eta_text(_progress(job).get("etaSeconds"))


def _loss(job: dict[str, Any], now: datetime.datetime) -> str:
    loss = number(_progress(job).get("loss"))
    return "" if loss is None else f"{loss:.3f}"


def _throughput(job: dict[str, Any], now: datetime.datetime) -> str:
    rate = number(_progress(job).get("sequencesPerSecond"))
    return "" if rate is None else f"{rate:.0f}"


def _updated(job: dict[str, Any], now: datetime.datetime) -> str:
    return age(_progress(job).get("updatedAt"), now)


def _serving(job: dict[str, Any]) -> dict[str, Any]:
    return mapping(mapping(job.get("status")).get("serving"))


def _serving_state(job: dict[str, Any], now: datetime.datetime) -> str:
    """Ready or NotReady for a served job (status.serving.ready, from its InferenceService's Ready condition)."""
    serving = _serving(job)
    if not serving:
        return ""
    return "Ready" if serving.get("ready") is True else "NotReady"


def _url(job: dict[str, Any], now: datetime.datetime) -> str:
    return text(_serving(job).get("url")) or ""


#: Added before AGE: the current stage's steps and ETA; with -o wide also whether a served job's model is ready and
#: its URL (status.serving), the loss, throughput and report age.
EXTRA = [Column("STEPS", _steps), Column("ETA", _eta)]
WIDE_EXTRA = [Column("SERVING", _serving_state), Column("URL", _url), Column("LOSS", _loss),
              Column("SEQ/S", _throughput), Column("UPDATED", _updated)]


def columns(wide: bool, all_namespaces: bool) -> list[Column]:
    """NAME (NAMESPACE first with -A), every printer column (STAGE included: which stage runs is what a user of a
    multi-stage job looks for first), the plugin's extras, AGE last."""
    printer = [_printer_column(spec) for spec in PRINTER_COLUMNS]
    dated = [c for c, spec in zip(printer, PRINTER_COLUMNS) if spec["type"] == "date"]
    undated = [c for c in printer if c not in dated]
    head = [Column("NAME", lambda job, now: _text(mapping(job.get("metadata")).get("name")))]
    if all_namespaces:
        head.insert(0, Column("NAMESPACE", lambda job, now: _text(mapping(job.get("metadata")).get("namespace"))))
    return [*head, *undated, *EXTRA, *(WIDE_EXTRA if wide else []), *dated]


def table(jobs: Sequence[dict[str, Any]], wide: bool = False, all_namespaces: bool = False,
          now: datetime.datetime | None = None) -> str:
    """The jobs as kubectl prints a table: upper-case headers, columns three spaces apart, no trailing blanks."""
    now = now or datetime.datetime.now(tz=datetime.timezone.utc)
    chosen = columns(wide, all_namespaces)
    rows = [[column.header for column in chosen]] + [[column.cell(job, now) for column in chosen] for job in jobs]
    return render_rows(rows)


def render_rows(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Rows of cells, left-aligned in columns three spaces apart (kubectl's layout); each cell escaped to one line
    (terminal.one_line), so no value can act on the terminal or draw a row of its own."""
    if not rows:
        return ""
    rows = [[one_line(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "".join(f"{indent}{line}\n" for line in lines)


def dump(jobs: Sequence[dict[str, Any]], output: str, single: bool) -> str:
    """-o yaml / -o json: one object as itself, several as a List, as kubectl prints them."""
    document: Any = jobs[0] if single else {"apiVersion": "v1", "kind": "List", "items": list(jobs),
                                            "metadata": {"resourceVersion": ""}}
    if output == "json":
        return json.dumps(document, indent=4) + "\n"
    return yaml.safe_dump(document, sort_keys=False, width=120)
