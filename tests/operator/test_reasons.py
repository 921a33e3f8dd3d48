"""The registry of reasons (bert_operator/reasons.py) against the code and against docs/operations.md, both ways:
no reason is written as a literal outside the registry, every registered reason is documented where it appears, and
the docs name no reason the operator does not write."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bert_operator import reasons
from bert_operator.status import PHASE_CONDITIONS

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "bert_operator"
OPERATIONS = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
#: Phase names: a phase change's Event has the new phase as its reason, and Ready=False may carry the phase.
PHASES = {"Pending", "Created", "Queued", "Running", "Suspended", "Restarting", "Succeeded", "Failed"}
CAMEL = re.compile(r"`([A-Z][A-Za-z]+)`")


def _name(node: ast.AST) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _literal(node: ast.AST | None) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


#: Calls that take a reason, and its position: set_condition(conditions, type, status, reason, ...),
#: StagePhase(phase, reason, message), JobState(phase, index, reason, message), Event(kind, reason, message).
REASON_ARGUMENT = {"set_condition": 3, "StagePhase": 1, "JobState": 2, "Event": 1}


def literal_reasons(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every reason written as a literal: a REASON_ constant given a string, a reason argument of
    the calls above, or a `"reason":` key of a dict."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _literal(node.value):
            for target in node.targets:
                if _name(target).startswith("REASON_"):
                    found.append((node.lineno, f"{_name(target)} = {ast.unparse(node.value)}"))
        elif isinstance(node, ast.Call) and _name(node.func) in REASON_ARGUMENT:
            position = REASON_ARGUMENT[_name(node.func)]
            given = node.args[position] if len(node.args) > position else next(
                (k.value for k in node.keywords if k.arg == "reason"), None)
            if _literal(given):
                found.append((node.lineno, ast.unparse(node)[:100]))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "reason" and _literal(value):
                    found.append((node.lineno, ast.unparse(node)[:100]))
    return found


def test_no_module_writes_a_reason_as_a_literal() -> None:
    written = {
        f"{path.relative_to(PACKAGE)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py")) if path.name != "reasons.py"
        for line, what in literal_reasons(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert not written, "define these in bert_operator/reasons.py and import them:\n" + "\n".join(sorted(written))


def test_no_module_renames_a_reason() -> None:
    """One name per reason: call sites write `reasons.<NAME>`, no module keeps a REASON_ alias of its own (a second
    name is a second place to look for what a job can say)."""
    aliases = {
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)[:100]}"
        for path in sorted(PACKAGE.rglob("*.py")) if path.name != "reasons.py"
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.Assign) and any(_name(target).startswith("REASON_") for target in node.targets)
    }
    assert not aliases, "use reasons.<NAME> where these are used:\n" + "\n".join(sorted(aliases))


def test_the_check_finds_literals() -> None:
    """The scan itself: each form it must catch (so the test above cannot pass by finding nothing)."""
    code = ('REASON_X = "X"\nset_condition(c, "Ready", False, "Literal", m, n, g)\nStagePhase("Pending", f"Not{k}", "")\n'
            'Event("Warning", reason="Y", message="")\ncondition = {"type": "Valid", "reason": "Z"}\n'
            'set_condition(c, "Ready", False, reasons.RUNNING, m, n, g)\n')
    assert [line for line, _ in literal_reasons(ast.parse(code))] == [1, 2, 3, 4, 5]


def _table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after `heading` in docs/operations.md."""
    section = OPERATIONS.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # past the header and its rule


def _documented_conditions() -> dict[str, set[str]]:
    """Condition type -> the reasons its rows of the conditions table name (the second column's backticked names)."""
    out: dict[str, set[str]] = {}
    for cells in _table("## Conditions and what to do"):
        kind = cells[0].strip("`")
        out.setdefault(kind, set()).update(CAMEL.findall(cells[1]))
    return out


def _documented_events() -> dict[str, set[str]]:
    """Event type -> the reasons the Events table names for it."""
    out: dict[str, set[str]] = {}
    for cells in _table("## Events"):
        out.setdefault(cells[0], set()).update(CAMEL.findall(cells[1]))
    return out


@pytest.mark.parametrize("reason", sorted(name for name, r in reasons.ALL.items() if r.conditions or r.event))
def test_every_reason_is_documented_where_it_appears(reason: str) -> None:
    entry = reasons.ALL[reason]
    conditions, events = _documented_conditions(), _documented_events()
    for kind in entry.conditions:
        if kind == "policy Valid":
            policies = OPERATIONS.split("On BertTrainingPolicies the operator writes", 1)[1].split("\n\n", 1)[0]
            assert f"`{reason}`" in policies, f"{reason}: not in the paragraph on BertTrainingPolicies' Valid"
        elif kind == "Ready" and ("Failed" in entry.conditions or "Queued" in entry.conditions):
            continue  # documented once: Ready=False carries the Failed and the Queued reason ("see Failed/Queued")
        else:
            assert reason in conditions.get(kind, set()), f"{reason}: no row of condition {kind} in docs/operations.md"
    if entry.event:
        assert reason in events.get(entry.event, set()), f"{reason}: not a {entry.event} Event in docs/operations.md"


def test_the_docs_name_no_reason_the_operator_does_not_write() -> None:
    ours = set(reasons.ALL)
    for kind, named in _documented_conditions().items():
        assert kind in {*PHASE_CONDITIONS.values(), "Valid", "SpecApplied", "Waiting", "Ready", "ProgressAvailable"}, kind
        assert named <= ours | PHASES, f"condition {kind}: {sorted(named - ours - PHASES)} are not in reasons.py"
    for kind, named in _documented_events().items():
        registered = {name for name, r in reasons.ALL.items() if r.event == kind}
        assert named <= registered | PHASES, f"{kind} Events: {sorted(named - registered - PHASES)} are not in reasons.py"


def test_reason_names_are_unique_camel_case() -> None:
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+", name) for name in reasons.ALL)
    constants = [value for key, value in vars(reasons).items() if key.isupper() and isinstance(value, str)]
    assert len(constants) == len(set(constants)) == len(reasons.ALL)
