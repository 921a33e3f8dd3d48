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

Rendering the skeleton itself (Jinja, a Python step per template node) was then the larger part left: so each
skeleton is kept with the trace of what the template asked of the values on the way (each truth, length, key list,
comparison and lookup, and where each value was placed). A job whose values give the same answers to the same
questions takes the same branches and makes the same text: its skeleton is the kept one, and Jinja runs once per
shape, not once per job start (:class:`_Trace`).
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


Path = tuple[Any, ...]


class _Trace:
    """What a skeleton render asked of the values, in order, with the answers: replayed on other values, equal answers
    mean the template takes the same branches and places the same values, so it makes the same skeleton text."""

    __slots__ = ("steps", "placed")

    def __init__(self) -> None:
        self.steps: list[tuple[str, Path, Any, Any]] = []  # (question, value's path, argument, answer)
        self.placed: dict[str, Path] = {}  # token -> the path of the value it stands for

    def answers(self, values: dict[str, Any]) -> bool:
        """Whether `values` answer every question as the traced ones did."""
        for question, path, argument, answer in self.steps:
            found, value = _resolve(values, path)
            if not found:
                return False
            if question == "get":
                try:
                    value[argument]
                except (LookupError, TypeError):
                    if answer:
                        return False
                else:
                    if not answer:
                        return False
            elif question == "bool":
                if bool(value) != answer:
                    return False
            elif question == "len":
                if len(value) != answer:
                    return False
            elif question == "keys":
                if tuple(value) != answer:
                    return False
            elif question == "eq":
                other = _resolve(values, argument[1])[1] if argument[0] == "slot" else argument[1]
                if bool(value == other) != answer:
                    return False
        return True

    def tokens(self, values: dict[str, Any]) -> dict[str, str | _Kept]:
        """The token map of a skeleton render of `values` (which answer this trace): each token's value as placed."""
        return {token: _as_placed(_resolve(values, path)[1]) for token, path in self.placed.items()}


def _resolve(values: dict[str, Any], path: Path) -> tuple[bool, Any]:
    """(found, the value at `path`): its name, then each key."""
    if path[0] not in values:
        return False, None
    value = values[path[0]]
    for key in path[1:]:
        try:
            value = value[key]
        except (LookupError, TypeError):
            return False, None
    return True, value


class _Slot:
    """A template value during a skeleton render: placed as a token; its truth, items and fields are the value's,
    so every branch the template takes is the one the value takes (and shows in the skeleton's text). Every answer
    it gives is written to the render's trace."""

    __slots__ = ("_value", "_path", "_trace")

    def __init__(self, value: Any, path: Path, trace: _Trace) -> None:
        self._value, self._path, self._trace = value, path, trace

    def _child(self, key: Any) -> "_Slot":
        try:
            value = self._value[key]
        except (LookupError, TypeError):
            self._trace.steps.append(("get", self._path, key, False))
            raise
        self._trace.steps.append(("get", self._path, key, True))
        return _Slot(value, (*self._path, key), self._trace)

    def __getitem__(self, key: Any) -> "_Slot":
        return self._child(key)

    def __bool__(self) -> bool:
        answer = bool(self._value)
        self._trace.steps.append(("bool", self._path, None, answer))
        return answer

    def __eq__(self, other: object) -> bool:
        argument: tuple[str, Any]
        if isinstance(other, _Slot):
            answer, argument = bool(self._value == other._value), ("slot", other._path)
        else:
            answer, argument = bool(self._value == other), ("value", other)
        self._trace.steps.append(("eq", self._path, argument, answer))
        return answer

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        answer = len(self._value)
        self._trace.steps.append(("len", self._path, None, answer))
        return answer

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("the MPIJob template iterates values with .items() only")

    def items(self) -> list[tuple[Any, "_Slot"]]:
        keys = tuple(self._value)
        self._trace.steps.append(("keys", self._path, None, keys))
        return [(key, _Slot(self._value[key], (*self._path, key), self._trace)) for key in keys]

    def __str__(self) -> str:
        raise TypeError(f"template value {'.'.join(map(str, self._path))!r} placed without tojson")

    def _placed(self) -> str:
        """The token this value is placed as (JSON, so also YAML), remembered with the path of its value."""
        token = "\x00" + ".".join(map(str, self._path))
        self._trace.placed[token] = self._path
        return json.dumps(token)


def _as_placed(value: Any) -> "str | _Kept":
    """A value as a token's entry: its JSON, or the value itself where reading its JSON gives it back unchanged."""
    return _Kept(value) if type(value) in _KEPT else json.dumps(value, sort_keys=True)


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


#: Skeleton texts with the traces that made them, newest first; a few shapes in a real cluster, so a short list.
_SHAPES: list[tuple[_Trace, str]] = []
_SHAPES_KEPT = 32
_SHAPES_LOCK = threading.Lock()


def _skeleton_text(values: dict[str, Any]) -> tuple[str, _Trace]:
    """The skeleton text of `values` and a trace for their tokens: a kept one whose questions they answer alike, else
    a Jinja render of them (kept in turn)."""
    for trace, text in list(_SHAPES):
        if trace.answers(values):
            return text, trace
    trace = _Trace()
    text = _text({name: _Slot(value, (name,), trace) for name, value in values.items()})
    with _SHAPES_LOCK:
        _SHAPES.insert(0, (trace, text))
        del _SHAPES[_SHAPES_KEPT:]
    return text, trace


def _build(values: dict[str, Any]) -> dict[str, Any]:
    """What parsing :func:`_text` of `values` gives, from the cached skeleton of their shape."""
    text, trace = _skeleton_text(values)
    return _fill(_skeleton(text), trace.tokens(values))


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
