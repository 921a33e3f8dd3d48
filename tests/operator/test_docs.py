"""The documentation: docs/jobs.md is what scripts/render-docs.py writes, README.md stays short and starts with the
two commands CI and newcomers run, and every relative link (and its #anchor) in the docs resolves."""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
PAGES = [README, REPO / "charts" / "bert-operator" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: The README's two commands (.ci/run runs exactly the second).
COMMANDS = ("bash scripts/bootstrap.sh local && .venv/bin/bertjob run --local examples/bertjob-tiny.yaml",
            "bash scripts/bootstrap.sh dev && bash scripts/lint.sh && .venv/bin/pytest")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`[^`\n]*`")  # a pattern such as `(/.*)?` in a code span is no link


def render_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_docs", REPO / "scripts" / "render-docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jobs_md_is_the_generated_field_reference() -> None:
    module = render_docs()
    assert (REPO / "docs" / "jobs.md").read_text() == module.jobs_md(), f"docs/jobs.md is out of date: run {module.COMMAND}"


def test_jobs_md_has_a_row_for_every_field_of_the_crds() -> None:
    from bert_operator.api.crd import crd

    text = (REPO / "docs" / "jobs.md").read_text()
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    phase = spec["properties"]["task"]["properties"]["pretrain"]["properties"]["phases"]["items"]
    for name in phase["properties"]:
        assert f"| `spec.task.pretrain.phases[].{name}` |" in text
    assert "| `spec.precision` | string | `\"fp16\"` | `fp32`, `fp16`, `bf16` |" in text  # type, default, enum
    for kind in ("BertTrainingJob spec", "BertTrainingJob status", "BertTrainingPolicy spec", "BertTrainingPolicy status"):
        assert f"## {kind}\n" in text


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 10_000, f"README.md is {len(text.encode())} bytes; move detail into docs/"
    first = FENCE.search(text)
    assert first is not None and text[:first.start()].strip() == "# bert-operator"
    lines = first.group(0).splitlines()[1:-1]
    assert [line.split("#", 1)[0].strip() for line in lines] == list(COMMANDS)


def test_ci_runs_the_readmes_test_command() -> None:
    assert COMMANDS[1] in (REPO / ".ci" / "run").read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    """The anchors of a page's headings (outside code blocks), with GitHub's -1, -2 for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"^#{1,6} (.+)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(CODE.sub("", FENCE.sub("", page.read_text())))
            if not re.match(r"^[a-z]+:", target)]  # http:, https:, mailto: are not checked here


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert page.is_file()
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
    assert broken == []


def test_the_link_check_finds_a_broken_link_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## A `code` heading: yes\n\n[ok](#a-code-heading-yes) [bad](#nope) [gone](missing.md)\n"
                    "`[x](in-a-code-span.md)`\n```\n[in code](ignored.md)\n```\n")
    assert links(page) == ["#a-code-heading-yes", "#nope", "missing.md"]
    assert anchors(page) == {"top", "a-code-heading-yes"}


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {target.split("#", 1)[0] for target in links(README)}
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"README.md's table does not link docs/{page.name}"
