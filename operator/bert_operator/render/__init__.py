"""Rendering: a validated BertTrainingJob to the MPIJobs that run it. Pure functions, no I/O.

The template (``templates/mpijob.yaml.j2``) places every value as JSON, so its
YAML text has two parts: the template's own structure, the same for every job
of one shape (which optional blocks are there, which scheduling fields), and
the values. Parsing the whole text as YAML made up most of a job start's CPU
(PyYAML builds each node in Python). So the template is rendered with a token
in place of each value: that text is the skeleton, parsed as YAML once per
shape and cached; each token is then replaced by its value read back from its
JSON (``json.loads``, in C) with YAML's reading of the few literals where the
two differ. The result is the dict that parsing the fully rendered text gives
(:func:`render_mpijob_text` renders that text; the tests hold both equal).
"""

from __future__ import annotations

import json
import re
import threading
from functools import lru_cache
from typing import Any, Iterator

import jinja2
import yaml

from ..api.models import BertTrainingJob
from ..api.stages import Stage
from ..tasks import stages_of
from .values import RenderSettings, template_values

__all__ = ["RenderSettings", "prepare", "render_mpijob", "render_mpijob_text", "render_all", "render_values"]

#: libyaml's loader when PyYAML was built with it.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TEMPLATE = "mpijob.yaml.j2"


#: A UTF-16 surrogate pair as json.dumps escapes a character beyond the BMP, not itself behind an escaped backslash.
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _astral(match: re.Match[str]) -> str:
    high, low = int(match[2], 16) - 0xD800, int(match[3], 16) - 0xDC00
    return f"{match[1]}\\U{0x10000 + (high << 10) + low:08x}"


def yaml_json(value: Any) -> str:
    """`value` as JSON that is also valid YAML, for any string (keys sorted, as Jinja's own tojson): ASCII only, with a
    character beyond the BMP (an emoji in an annotation) as YAML's \\UXXXXXXXX instead of JSON's surrogate pair, which YAML
    parsers refuse."""
    return _SURROGATE_PAIR.sub(_astral, json.dumps(value, ensure_ascii=True, sort_keys=True))


class _Slot:
    """A template value during a skeleton render: placed as a token; its truth, items and fields are the value's,
    so every branch the template takes is the one the value takes (and shows in the skeleton's text)."""

    __slots__ = ("_value", "_token", "_tokens")

    def __init__(self, value: Any, token: str, tokens: dict[str, Any]) -> None:
        self._value, self._token, self._tokens = value, token, tokens

    def _child(self, key: Any) -> "_Slot":
        return _Slot(self._value[key], f"{self._token}.{key}", self._tokens)

    def __getitem__(self, key: Any) -> "_Slot":
        return self._child(key)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return bool(self._value == (other._value if isinstance(other, _Slot) else other))

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self._value)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("the MPIJob template iterates values with .items() only")

    def items(self) -> list[tuple[Any, "_Slot"]]:
        return [(key, self._child(key)) for key in self._value]

    def __str__(self) -> str:
        raise TypeError(f"template value {self._token!r} placed without tojson")

    def _placed(self) -> str:
        """The token this value is placed as (JSON, so also YAML), remembered with the value's JSON, or with the value
        itself where reading its JSON gives it back unchanged (see _Kept)."""
        token = f"\x00{self._token}"
        self._tokens[token] = _Kept(self._value) if type(self._value) in _KEPT else json.dumps(self._value, sort_keys=True)
        return json.dumps(token)


#: Types whose values come back from their JSON equal and of the same type, and cannot be changed in place: a string,
#: an int, a bool, None. Floats are read back as YAML reads them, containers are copied: both go through their JSON.
_KEPT = frozenset({str, int, bool, type(None)})


class _Kept:
    """A token's value kept as it is (a type of _KEPT): reading its JSON back would only make an equal one."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _tojson(value: Any) -> str:
    # _Slot is this module's; its methods are private so that a template's attribute lookup never finds them.
    return value._placed() if isinstance(value, _Slot) else yaml_json(value)  # noqa: SLF001


_COMPILED: list[jinja2.Template] = []
_COMPILING = threading.Lock()


def _template() -> jinja2.Template:
    """The template, compiled once per process. Under a lock: a burst of job starts after the operator starts
    reaches this from every handler thread at once, and an unguarded cache compiled it in each (16 times, 5 ms each)."""
    if not _COMPILED:
        with _COMPILING:
            if not _COMPILED:
                _COMPILED.append(_compile())
    return _COMPILED[0]


def prepare() -> None:
    """Compile the template now (the operator does, when it starts), not in the first job start."""
    _template()


def _compile() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("bert_operator.render", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,  # the package's template does not change under a running process
    )
    environment.filters["tojson"] = _tojson
    return environment.get_template(TEMPLATE)


@lru_cache(maxsize=64)
def _skeleton(text: str) -> Any:
    """The skeleton text parsed (tokens in place of values); never handed out, only copied by :func:`_fill`."""
    return yaml.load(text, Loader=_LOADER)


def _yaml_scalar(literal: str) -> Any:
    """A JSON literal as YAML reads it where the two differ: YAML 1.1 reads 1e-05, NaN and Infinity as strings."""
    return yaml.load(literal, Loader=_LOADER)


def _fill(node: Any, values: dict[str, str | _Kept]) -> Any:
    """A fresh copy of `node` with each token replaced by its value, read from its JSON (a new object each time), or
    kept as it is (_Kept)."""
    if isinstance(node, dict):
        return {key: _fill(item, values) for key, item in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, str) and node in values:
        value = values[node]
        if isinstance(value, _Kept):
            return value.value
        return json.loads(value, parse_float=_yaml_scalar, parse_constant=_yaml_scalar)
    return node


def _text(values: dict[str, Any]) -> str:
    return _template().render(**values)


def _build(values: dict[str, Any]) -> dict[str, Any]:
    """What parsing :func:`_text` of `values` gives, from the cached skeleton of their shape."""
    tokens: dict[str, str | _Kept] = {}
    skeleton = _skeleton(_text({name: _Slot(value, name, tokens) for name, value in values.items()}))
    return _fill(skeleton, tokens)


def render_mpijob_text(job: BertTrainingJob, stage: Stage, settings: RenderSettings | None = None) -> str:
    """The template rendered with its values: the YAML text whose parse :func:`render_mpijob` returns."""
    return _text(template_values(job, stage, settings or RenderSettings()))


def render_mpijob(job: BertTrainingJob, stage: Stage, settings: RenderSettings | None = None) -> dict[str, Any]:
    """The MPIJob for one stage of `job`."""
    return _build(template_values(job, stage, settings or RenderSettings()))


def render_values(values: dict[str, Any]) -> dict[str, Any]:
    """The MPIJob of values :func:`template_values` made (render_mpijob, for a caller that needs the values too)."""
    return _build(values)


def render_all(job: BertTrainingJob, settings: RenderSettings | None = None) -> list[dict[str, Any]]:
    """The MPIJobs of every stage of `job`, in the order they run."""
    return [render_mpijob(job, stage, settings) for stage in stages_of(job.spec)]
