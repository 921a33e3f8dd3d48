"""A job template overlay: a platform's Jinja patch over the MPIJob the operator renders, named and versioned.

An overlay file (what ``bertjob render --template`` reads, what a platform keeps in its chart's values) is YAML:

    name: efa                  # a DNS label: how policies and jobs name it
    version: "2"               # any short string; recorded with each stage that used it
    description: AWS EFA devices and the NCCL/OFI settings that go with them
    values:                    # values the patch reads as values.<name>, with their defaults
      efaPerWorker: 4
    patch: |                   # Jinja, rendering to a YAML strategic-merge patch of the MPIJob
      spec: ...

Why Jinja in a sandbox: the patch is data a platform owns, rendered inside the operator for every stage; the
sandbox gives it expressions and loops but no attribute of Python objects beyond plain data, and undefined names
fail instead of rendering empty. The patch sees ``job`` (name, namespace, labels, annotations, spec as written on
the wire), ``stage`` (name, index, mpijob), ``base`` (the values the operator's own template got) and ``values``.

Errors name the overlay and a line: the template's line for Jinja errors, the rendered patch's line for YAML errors
and for the fields checks.py refuses (the two agree unless the patch uses loops or multi-line blocks).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from typing import Any, Iterator

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..render import yaml_json
from .merge import merge_key

#: Bounds of an overlay's parts: it is read into every job start, and its messages reach terminals.
MAX_PATCH_CHARACTERS = 64 * 1024
MAX_VALUES_CHARACTERS = 16 * 1024
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$")
_FIELDS = ("name", "version", "description", "values", "patch")
#: The file name Jinja gives a template made from a string: its frames in a traceback carry the template's lines.
_TEMPLATE_FILE = "<template>"


class TemplateInvalid(ValueError):
    """An overlay that cannot be used: which one, where in it (a line, when known), which field, and why."""

    def __init__(self, overlay: str, message: str, *, line: int | None = None, field: str | None = None,
                 in_patch: bool = False, patch_offset: int | None = None) -> None:
        self.overlay, self.field, self.reason = overlay, field, message
        #: The line of the overlay's file (for a patch line: where it falls in the file, when the patch's place is known).
        self.line = line + patch_offset if line and in_patch and patch_offset is not None else (None if in_patch else line)
        self.patch_line = line if in_patch else None
        where = f"template {overlay}" + (f", line {self.line}" if self.line else "") + (
            f" (patch line {self.patch_line})" if self.patch_line else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")

    def placed(self, patch_offset: int) -> "TemplateInvalid":
        """The same error with its patch line also given as a line of the overlay's file."""
        if self.patch_line is None:
            return self
        return TemplateInvalid(self.overlay, self.reason, line=self.patch_line, field=self.field, in_patch=True,
                               patch_offset=patch_offset)


@dataclasses.dataclass(frozen=True)
class Overlay:
    name: str
    version: str
    description: str
    values: dict[str, Any]
    patch: str
    #: Lines of the overlay's file before the patch's first line (a patch line plus this is a line of the file).
    patch_offset: int = 0

    @property
    def ref(self) -> str:
        """``name@version``: what a stage records, so a rerun renders the same way."""
        return f"{self.name}@{self.version}"


def _line_of(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def parse_overlay(text: str, source: str) -> Overlay:
    """An overlay from its YAML text (`source` names it in errors until its own name is known)."""
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TemplateInvalid(source, f"not YAML: {getattr(exc, 'problem', None) or exc}",
                              line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise TemplateInvalid(source, "expected a mapping with name, version, values and patch")
    lines = {key.value: _line_of(key) for key, _ in root.value} if isinstance(root, yaml.MappingNode) else {}
    unknown = sorted(str(key) for key in data if key not in _FIELDS)
    if unknown:
        raise TemplateInvalid(source, f"unknown field(s) {unknown}; an overlay has {', '.join(_FIELDS)}",
                              line=lines.get(unknown[0]))
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise TemplateInvalid(source, f"must be a DNS label (a-z, 0-9, '-', at most 63), got {yaml_json(name)[:80]}",
                              field="name", line=lines.get("name"))
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not _VERSION.match(version):
        raise TemplateInvalid(name, "must be a string of letters, digits, '-', '_' or '.', at most 63",
                              field="version", line=lines.get("version"))
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > 1024:
        raise TemplateInvalid(name, "must be a string of at most 1024 characters", field="description",
                              line=lines.get("description"))
    values = data.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(k, str) and k.isidentifier() for k in values):
        raise TemplateInvalid(name, "must map identifiers to their default values", field="values",
                              line=lines.get("values"))
    if len(yaml_json(values)) > MAX_VALUES_CHARACTERS:
        raise TemplateInvalid(name, f"over {MAX_VALUES_CHARACTERS} characters as JSON", field="values",
                              line=lines.get("values"))
    patch = data.get("patch")
    if not isinstance(patch, str) or not patch.strip():
        raise TemplateInvalid(name, "must be the patch's Jinja text (a YAML block string)", field="patch",
                              line=lines.get("patch"))
    if len(patch) > MAX_PATCH_CHARACTERS:
        raise TemplateInvalid(name, f"over {MAX_PATCH_CHARACTERS} characters", field="patch", line=lines.get("patch"))
    overlay = Overlay(name, version, description, values, patch, _patch_offset(root))
    try:
        _compiled(overlay.name, overlay.patch)  # a syntax error fails here, with its line
    except TemplateInvalid as exc:
        raise exc.placed(overlay.patch_offset) from None
    return overlay


def _patch_offset(root: yaml.Node | None) -> int:
    """How many lines of the file come before the patch text's first line: a block scalar (``patch: |``) starts on
    the line after its indicator, a flow scalar on its own line."""
    if not isinstance(root, yaml.MappingNode):
        return 0
    node = next((value for key, value in root.value if key.value == "patch"), None)
    if not isinstance(node, yaml.ScalarNode):
        return 0
    return node.start_mark.line + 1 if node.style in ("|", ">") else node.start_mark.line


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                                keep_trailing_newline=True)
    environment.filters["tojson"] = yaml_json
    return environment


@functools.lru_cache(maxsize=256)
def _compiled(name: str, patch: str) -> jinja2.Template:
    """The patch compiled once per text (an overlay is rendered for every stage of every job; a str keeps its hash,
    so the lookup costs nothing after the first)."""
    try:
        return _environment().from_string(patch)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateInvalid(name, f"Jinja: {exc.message}", field="patch", line=exc.lineno, in_patch=True) from None


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[yaml.Node | None, Any]:
    """A rendered patch's YAML nodes (their lines, for errors) and data, once per text: most templates render the
    same text for every job (no job-specific value in them), and building the data in Python was most of a
    template's cost. Never changed by a caller (the merge copies what it takes from a patch)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _template_line() -> int | None:
    """The template line the exception being handled was raised at (Jinja rewrites its frames to them)."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclasses.dataclass(frozen=True)
class RenderedPatch:
    overlay: Overlay
    text: str
    patch: dict[str, Any]
    node: yaml.Node


#: The most a patch may render to: an MPIJob is a few KB, and the API server refuses bodies over about 3 MB.
MAX_RENDERED_CHARS = 512 * 1024


def _bounded(overlay: Overlay, chunks: Iterator[str]) -> str:
    """The rendered text, stopped as soon as it passes MAX_RENDERED_CHARS (a loop over a large range renders
    without end in memory otherwise; the sandbox already bounds each range() to 100,000 items)."""
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise TemplateInvalid(overlay.name, f"the patch renders to over {MAX_RENDERED_CHARS} characters",
                                  field="patch", in_patch=True)
        out.append(chunk)
    return "".join(out)


def render_patch(overlay: Overlay, context: dict[str, Any], overrides: dict[str, Any] | None = None) -> RenderedPatch:
    """The overlay's patch for one stage: its Jinja rendered with `context` and its values (defaults, then
    `overrides` of declared names only), parsed as YAML (a mapping, or nothing: an overlay may patch no stage)."""
    unknown = sorted(set(overrides or {}) - set(overlay.values))
    if unknown:
        raise TemplateInvalid(overlay.name, f"values {unknown} are not declared by the overlay "
                                            f"(it declares {sorted(overlay.values) or 'none'})", field="values")
    values = {**overlay.values, **(overrides or {})}
    try:
        text = _bounded(overlay, _compiled(overlay.name, overlay.patch).generate(**context, values=values))
    except TemplateInvalid:
        raise
    except jinja2.UndefinedError as exc:
        raise TemplateInvalid(overlay.name, f"Jinja: {exc.message}", field="patch", line=_template_line(),
                              in_patch=True) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateInvalid(overlay.name, f"Jinja sandbox: {exc}", field="patch", line=_template_line(),
                              in_patch=True) from None
    except Exception as exc:  # noqa: BLE001 - any error of the platform's template is its own, reported with its line
        raise TemplateInvalid(overlay.name, f"Jinja: {type(exc).__name__}: {exc}", field="patch",
                              line=_template_line(), in_patch=True) from None
    try:
        node, patch = _parsed(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TemplateInvalid(overlay.name, f"the rendered patch is not YAML: {getattr(exc, 'problem', None) or exc}",
                              field="patch", line=mark.line + 1 if mark else None, in_patch=True) from None
    if patch is None or node is None:
        return RenderedPatch(overlay, text, {}, yaml.MappingNode("tag:yaml.org,2002:map", []))
    if not isinstance(patch, dict):
        raise TemplateInvalid(overlay.name, "the rendered patch must be a mapping (a partial MPIJob)", field="patch",
                              line=_line_of(node), in_patch=True)
    return RenderedPatch(overlay, text, patch, node)


def reach(rendered: RenderedPatch, path: list[str | int], result: Any) -> tuple[int, int | None]:
    """How many parts of `path` (keys and list indexes into the merged `result`) the rendered patch holds, and the
    line of the deepest one (None: it holds none). List items are found by their merge key (a container by its
    name), as they were merged."""
    node: yaml.Node | None = rendered.node
    line, depth, field = None, 0, None
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node, field = _line_of(match[0]), match[1], part
            result = result.get(part) if isinstance(result, dict) else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            key = merge_key(field) if field else None
            item = result[part] if isinstance(result, list) and part < len(result) else None
            if key and isinstance(item, dict):
                node = next((n for n in node.value if isinstance(n, yaml.MappingNode) and any(
                    k.value == key and getattr(v, "value", None) == str(item.get(key)) for k, v in n.value)), None)
            else:
                node = node.value[part] if part < len(node.value) else None
            if node is None:
                break
            line, result = _line_of(node), item
        else:
            break
        depth += 1
    return depth, line
