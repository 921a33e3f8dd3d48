"""The running bert-operator's version, in one place: build_info, the plugin's --version and both user agents."""

from __future__ import annotations

from importlib import metadata

#: The distribution pyproject.toml declares.
DISTRIBUTION = "bert-operator"


def package_version() -> str:
    """The installed distribution's version; the package's own __version__, else `unknown`, when run from a source
    tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import bert_operator

        return str(getattr(bert_operator, "__version__", "unknown"))
