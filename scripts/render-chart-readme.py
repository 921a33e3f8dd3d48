"""Write the values table of charts/bert-operator/README.md from the chart's values.yaml.

    python scripts/render-chart-readme.py          # rewrite the table between the README's markers
    python scripts/render-chart-readme.py --check  # exit 1 if it is out of date

Why generated: values.yaml is where a value and its explanation are written
(the comment block above each key); a hand-kept table would drift from it. One
row per leaf key: its path, its type (values.schema.json's, else the default's
own), its default (values.yaml parsed as Helm parses it) and its description
(the comment block right above the key, or above the run of keys it is
written in, no blank line between; else the schema's description; else, for
the first key of a map, the map's comment).
Allowed values come from the schema's enums. Only the text between the two
markers is replaced, so the README's prose stays hand-written.
tests/chart/test_chart_metadata.py keeps the checked-in table current.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "bert-operator"
README = CHART / "README.md"
COMMAND = "python scripts/render-chart-readme.py"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def comments(text: str) -> dict[tuple[str, ...], str]:
    """Key path -> the description written for it in values.yaml (its own comment block, its run's or its map's)."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    block: list[str] = []  # the comment lines right above the current line
    first_child = False  # whether the current key is the first one of the map opened on the line before
    run: dict[tuple[str, ...], tuple[str, ...]] = {}  # map -> its last key since the last blank line
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            block, run = [], {}
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if match is None or stripped.startswith("- "):  # a list item or a continuation: no key of its own
            block = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = tuple(key for _, key in stack) + (match["key"],)
        own = " ".join(" ".join(block).split())
        if own:
            found[path] = own
        elif first_child and path[:-1] in found:  # `progress:` described, then `port:` right below it
            found[path] = found[path[:-1]]
        elif path[:-1] in run and run[path[:-1]] in found:  # one comment above a run of keys
            found[path] = found[run[path[:-1]]]
        run[path[:-1]] = path
        first_child = not match["rest"].strip()  # a key with nothing after the colon opens a map
        stack.append((indent, match["key"]))
        block = []
    return found


def _schema_node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = schema
    for key in path:
        node = (node.get("properties") or {}).get(key) or {}
        if "$ref" in node:
            node = {**schema["definitions"][node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict[str, Any], default: Any) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind:
        return str(kind)
    if "enum" in node:
        return "string"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(default), "")


def leaves(values: dict[str, Any], schema: dict[str, Any],
           path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The keys a table row each, in values.yaml's order: every key whose value is not a map of the chart's own
    keys. A map the schema leaves free-form (`resources`, a Kubernetes block) is one row, its default whole."""
    found = []
    for key, value in values.items():
        node = _schema_node(schema, path + (key,))
        if isinstance(value, dict) and value and (node.get("properties") or not node):
            found += leaves(value, schema, path + (key,))
        else:
            found.append((path + (key,), value))
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text) or {}
    schema = json.loads((CHART / "values.schema.json").read_text())
    described = comments(text)
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for path, default in leaves(values, schema):
        node = _schema_node(schema, path)
        own = described.get(path)
        description = own if own and own != described.get(path[:-1]) else str(node.get("description") or own or "")
        if "enum" in node:
            description += f" One of: {', '.join(f'`{v}`' for v in node['enum'])}."
        shown = f"`{json.dumps(default)}`"
        lines.append("| " + " | ".join(_cell(part) for part in (
            f"`{'.'.join(path)}`", _type(node, default), shown,
            description.strip().replace("<", "&lt;").replace(">", "&gt;"))) + " |")
    return "\n".join(lines) + "\n"


def readme(current: str) -> str:
    """`current` with the table between the markers replaced by today's."""
    if START not in current or END not in current:
        raise SystemExit(f"{README}: the markers {START} and {END} are missing")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}{END}{tail}"


def main(argv: list[str]) -> int:
    current = README.read_text()
    text = readme(current)
    if "--check" in argv:
        if text != current:
            print(f"{README}: the values table is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    README.write_text(text)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
