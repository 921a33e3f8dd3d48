"""YAML text to plain documents, refusing what would hang, blow the stack or mean something else than it says.

PyYAML's safe loader builds whatever the text describes: a 1.6 KB file of
nested aliases expands to gigabytes when a validator walks it, 500 levels of
``[[[...]]]`` exceed Python's recursion limit inside the composer, a
4301-digit integer raises ``ValueError`` from ``int()``, and a key written twice
silently keeps the last value. A BertTrainingJob needs none of that, so this
loader checks the composed node graph (sizes counted through aliases, without
expanding them) before anything is constructed, and refuses with the line and
column of the offending node. Every limit is far above what a real job uses.
"""

from __future__ import annotations

from typing import Any, Iterator

import yaml

#: Deepest nesting of mappings and lists the loader builds. A real job is under 15 deep; documents between
#: api.parse.MAX_DEPTH and this are built and then refused with the field they start at.
MAX_DEPTH = 256
#: Nodes a document may expand to, aliases counted each time they are used (a real job has a few hundred).
MAX_NODES = 20_000
#: Digits of an integer the loader builds (int64 has 19; the field check refuses those beyond int64 by name).
MAX_INT_DIGITS = 1000
#: Characters of one scalar (a custom bert_config.json or an affinity fits easily).
MAX_SCALAR = 64 * 1024

_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputRefused(yaml.YAMLError):
    """The YAML is well formed but refused; carries where."""

    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.problem = message
        self.problem_mark = mark


def _check_graph(root: yaml.Node) -> None:
    """Depth, expanded size, duplicate keys, integer digits and scalar length of a composed document, aliases
    included.

    Iterative (no recursion to exhaust) and memoised per node, so an alias bomb is
    measured in time linear in the text, not in what it would expand to."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise InputRefused(f"the document expands to more than {MAX_NODES} values (aliases counted each "
                                   "time they are used)", node.start_mark)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise InputRefused("an alias refers to a value that contains it", node.start_mark)
        if depth > MAX_DEPTH:
            raise InputRefused(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node)
            sizes[key] = 1
            continue
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node)
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node) if id(child) not in sizes)


def _check_unique_keys(mapping: yaml.MappingNode) -> None:
    """A key written twice in one mapping is refused (YAML 1.2 forbids it; PyYAML keeps the last silently)."""
    keys: set[str] = set()
    for key, _ in mapping.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in keys:
                raise InputRefused(f"key {key.value[:100]!r} appears twice in one mapping", key.start_mark)
            keys.add(key.value)


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_scalar(node: yaml.ScalarNode) -> None:
    if len(node.value) > MAX_SCALAR:
        raise InputRefused(f"a value of {len(node.value)} characters; at most {MAX_SCALAR} are allowed", node.start_mark)
    if node.tag == "tag:yaml.org,2002:int":
        digits = sum(c.isdigit() for c in node.value)
        if digits > MAX_INT_DIGITS:
            raise InputRefused(f"an integer of {digits} digits; at most {MAX_INT_DIGITS} are allowed", node.start_mark)


def load_all(text: str) -> list[Any]:
    """Every document of `text`, each checked before it is constructed; raises yaml.YAMLError (or InputRefused)."""
    loader = _BASE_LOADER(text)
    documents: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_graph(node)
            documents.append(loader.construct_document(node))
    except RecursionError:  # the composer recurses once per level: far deeper than MAX_DEPTH
        raise InputRefused(f"nested deeper than {MAX_DEPTH} levels", None) from None
    finally:
        loader.dispose()
    return documents
