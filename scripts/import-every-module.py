"""Import every module of one of the project's packages; with --refuse, as if some distributions were not installed.

    python scripts/import-every-module.py bert_trainer --refuse pydantic --refuse bert_operator
    python scripts/import-every-module.py bert_operator --refuse tensorflow --refuse bert_trainer

Each package must import in a venv that has only its own extra (the trainer image has no pydantic, kopf or
jinja2; the operator image no TensorFlow). A venv per check is too slow for the test suite, so
tests/test_packages.py runs this script in the dev venv, which has everything, and refuses the other side's
top-level modules to the project's own code (bert_common, bert_operator, bert_trainer) through a sys.meta_path
finder: a third-party library keeps its own dependencies. scripts/check-clean-venvs.sh runs it in real clean
venvs. Prints one line per module that failed to import and exits 1 if any did. Standard library only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import FrameType
from typing import Sequence

FIRST_PARTY = frozenset({"bert_common", "bert_operator", "bert_trainer"})


def importer(frame: FrameType | None) -> str:
    """The module whose code runs the import: the first frame outside the import machinery."""
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if not (name.startswith(("importlib", "_frozen_importlib")) or name == __name__):
            return name
        frame = frame.f_back
    return ""


class Refuse(MetaPathFinder):
    """Answers an import of a refused top-level name by the project's own code as a missing module would."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] not in self.names:
            return None
        by = importer(sys._getframe(1))  # noqa: SLF001 - who imports decides, not what
        if by.partition(".")[0] not in FIRST_PARTY:
            return None
        raise ModuleNotFoundError(f"No module named {fullname!r} (refused to {by})", name=fullname)


def modules(package: str) -> list[str]:
    """Every module of `package` by its files, except __main__ (which runs the program)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package}: not an importable package")
    found = []
    for location in spec.submodule_search_locations:
        root = Path(location)
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            found.append(".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts)))
    return found


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", choices=sorted(FIRST_PARTY))
    parser.add_argument("--refuse", action="append", default=[], metavar="MODULE",
                        help="a top-level module the project's code may not import (repeatable)")
    args = parser.parse_args(argv)
    sys.meta_path.insert(0, Refuse(args.refuse))
    names = modules(args.package)
    failed = 0
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the finding, reported per module
            failed += 1
            print(f"{name}: {type(exc).__name__}: {exc}")
    print(f"{args.package}: {len(names) - failed} of {len(names)} modules imported")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
