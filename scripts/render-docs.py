"""Write docs/jobs.md: every field of BertTrainingJob (spec and status) and BertTrainingPolicy, one row per path.

    python scripts/render-docs.py          # rewrite docs/jobs.md
    python scripts/render-docs.py --check  # exit 1 if it is out of date

Why generated: the field reference must say exactly what the API server
enforces. Types, ranges, enums, patterns, required fields and descriptions are
read from the same structural schema the CRDs hold (bert_operator.api.crd), so
the page cannot drift from manifests/crd.yaml; defaults are read from the
pydantic models' JSON schema beside it, because the CRD carries none (the
operator fills them in). tests/operator/test_docs.py keeps the checked-in
file equal to this output, as tests/operator/test_crd.py does for the CRD.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "jobs.md"
COMMAND = "python scripts/render-docs.py"
# The operator package without an install (as in a fresh checkout with only the venv): scripts run from anywhere.
sys.path[:0] = [str(REPO / "common"), str(REPO / "operator")]


class Row(NamedTuple):
    path: str
    type: str
    default: str
    allowed: str
    required: bool
    description: str


def _raw(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON-schema node with its $ref and Optional[...] wrapper resolved (the outer keys kept)."""
    while True:
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            continue
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        if "anyOf" in node and len(options) == 1:
            node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
            continue
        return node


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = node.get("type", "")
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    if kind == "object" and node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return "object (any fields)"
    return kind


def _allowed(node: dict[str, Any]) -> str:
    """The schema's constraints on one field, in words a reader checks a value against."""
    parts = []
    if "enum" in node:
        parts.append(", ".join(f"`{value}`" for value in node["enum"]))
    if "minimum" in node:
        parts.append(f"{'>' if node.get('exclusiveMinimum') else '>='} {node['minimum']}")
    if "maximum" in node:
        parts.append(f"{'<' if node.get('exclusiveMaximum') else '<='} {node['maximum']}")
    if "minProperties" in node and node.get("minProperties") == node.get("maxProperties"):
        parts.append(f"exactly {node['minProperties']} field(s)")
    for key, words in (("minLength", "length >= {}"), ("maxLength", "length <= {}"), ("minItems", ">= {} items"),
                       ("maxItems", "<= {} items"), ("minProperties", ">= {} fields"), ("maxProperties", "<= {} fields")):
        if key in node and not (key.endswith("Properties") and node.get("minProperties") == node.get("maxProperties")):
            parts.append(words.format(node[key]))
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    items = node.get("items") or {}
    if node.get("type") == "array" and "properties" not in items and _allowed(items):
        parts.append(f"each: {_allowed(items)}")
    return "; ".join(parts)


def _default(raw: dict[str, Any]) -> str:
    if "default" not in raw or raw["default"] is None:
        return ""
    return f"`{json.dumps(raw['default'], separators=(', ', ': '))}`"


def _vendored(raw: dict[str, Any]) -> str | None:
    """The name of a Kubernetes core type whose own schema a field embeds (its rows would be Kubernetes' docs)."""
    comment = str(raw.get("$comment") or "")
    return comment.split(" of Kubernetes", 1)[0] if comment.startswith("core/") else None


def rows(node: dict[str, Any], raw: dict[str, Any], defs: dict[str, Any], path: str) -> Iterator[Row]:
    """One row per field below `node` (structural, as in the CRD), with `raw` (pydantic's) walked alongside."""
    required = set(node.get("required") or [])
    raw_props = raw.get("properties") or {}
    for name, child in (node.get("properties") or {}).items():
        child_raw = _raw(raw_props.get(name) or {}, defs)
        where = f"{path}.{name}"
        vendored = _vendored(child_raw)
        kind = f"object (Kubernetes {vendored})" if vendored else _type(child)
        yield Row(where, kind, _default(child_raw), _allowed(child), name in required,
                  " ".join(str(child.get("description") or "").split()))
        if vendored:
            continue
        yield from _below(child, child_raw, defs, where)


def _below(node: dict[str, Any], raw: dict[str, Any], defs: dict[str, Any], path: str) -> Iterator[Row]:
    if "properties" in node:
        yield from rows(node, raw, defs, path)
    elif node.get("type") == "array" and "properties" in (node.get("items") or {}):
        yield from rows(node["items"], _raw(raw.get("items") or {}, defs), defs, f"{path}[]")
    elif isinstance(node.get("additionalProperties"), dict) and "properties" in node["additionalProperties"]:
        yield from rows(node["additionalProperties"], _raw(raw.get("additionalProperties") or {}, defs), defs,
                        f"{path}.<key>")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _text(text: str) -> str:
    """Prose in a cell: `<version>` in a description is a placeholder, not an HTML tag to be swallowed."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def table(found: Iterator[Row]) -> str:
    lines = ["| field | type | default | allowed | required | description |", "| --- | --- | --- | --- | --- | --- |"]
    for row in found:
        lines.append("| " + " | ".join(_cell(part) for part in (
            f"`{row.path}`", row.type, row.default, row.allowed, "yes" if row.required else "", _text(row.description))) + " |")
    return "\n".join(lines) + "\n"


def section(title: str, intro: str, crd: dict[str, Any], part: str, model: Any) -> str:
    """The rows of `.spec` or `.status` of one CRD, from its schema and the model it came from."""
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][part]
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return f"## {title}\n\n{intro}\n\n" + table(rows(node, raw, raw.get("$defs", {}), part))


def jobs_md() -> str:
    from bert_operator.api.crd import crd, policy_crd
    from bert_operator.api.models import BertTrainingJobSpec
    from bert_operator.api.policy import BertTrainingPolicySpec
    from bert_operator.api.status import BertTrainingJobStatus, BertTrainingPolicyStatus

    job, policy = crd(), policy_crd()
    head = (
        "# Field reference: BertTrainingJob and BertTrainingPolicy\n\n"
        f"<!-- Generated by `{COMMAND}` from bert_operator.api (the CRDs' schema); do not edit by hand. -->\n\n"
        "Every field of `bertoperator.io/v1alpha1`, one row per path (`[]` marks the items of a list, `<key>` the "
        "values of a map). Types, allowed values, required fields and descriptions are the CRDs' own "
        "(`manifests/crd.yaml`, `manifests/policy-crd.yaml`; `kubectl explain btj.spec` shows the same text); "
        "defaults are the ones the operator fills in (the CRD stores none). Rules that relate several fields are "
        "in [the job guide](job-guide.md#rules-across-fields); the guide also explains pipelines, references and "
        "exports.\n\n"
        "- [BertTrainingJob spec](#berttrainingjob-spec)\n"
        "- [BertTrainingJob status](#berttrainingjob-status)\n"
        "- [BertTrainingPolicy spec](#berttrainingpolicy-spec)\n"
        "- [BertTrainingPolicy status](#berttrainingpolicy-status)\n\n"
    )
    return head + "\n".join([
        section("BertTrainingJob spec", "What a user applies (`kind: BertTrainingJob`, namespaced, short name `btj`).",
                job, "spec", BertTrainingJobSpec),
        section("BertTrainingJob status", "Written by the operator only (the status subresource); see "
                "[operations](operations.md#conditions-and-what-to-do) for the conditions' reasons.",
                job, "status", BertTrainingJobStatus),
        section("BertTrainingPolicy spec", "A platform team's rules (`kind: BertTrainingPolicy`, cluster-scoped, "
                "short name `btp`); see [install](install.md#multi-tenant-clusters-berttrainingpolicies).",
                policy, "spec", BertTrainingPolicySpec),
        section("BertTrainingPolicy status", "Written by the operator.", policy, "status", BertTrainingPolicyStatus),
    ])


def main(argv: list[str]) -> int:
    text = jobs_md()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
