"""Print the requirements of pyproject.toml's base dependencies plus the named extras, one a line.

    python scripts/requirements-from-pyproject.py operator > requirements.txt
    python scripts/requirements-from-pyproject.py trainer --drop tensorflow-cpu

Used by the Dockerfiles to install dependencies in a layer of their own, which
only a change to pyproject.toml invalidates (the project itself is then installed
with --no-deps). Standard library only (Python 3.11+ tomllib).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str], drop: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    found = list(project.get("dependencies", []))
    for extra in extras:
        found += optional[extra]
    dropped = {name.lower() for name in drop}
    kept, seen = [], set()
    for requirement in found:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name in dropped or requirement in seen:
            continue
        seen.add(requirement)
        kept.append(requirement)
    return kept


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME", help="leave this distribution out")
    parser.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml")
    args = parser.parse_args(argv)
    print("\n".join(requirements(args.pyproject, args.extras, args.drop)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
