"""The running bert-operator's version, in one place: build_info, the plugin's --version and both user agents."""

from __future__ import annotations

from importlib import metadata

from bert_common import __version__

#: The distribution pyproject.toml declares.
DISTRIBUTION = "bert-operator"


def package_version() -> str:
    """The installed distribution's version; bert_common's __version__ (which pyproject.toml reads) when run from
    a source tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__
