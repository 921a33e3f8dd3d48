"""Typed reads of a status that something else wrote, for the code that shows it.

What `kubectl bertjob` and `bertjob run --local` print comes from a BertTrainingJob's status: written by the
operator, but filled from a tenant's reports (`results` is free-form), possibly by an older or newer operator, or
by anyone allowed to patch the status. A printer must never fail on it: each read here returns the type asked for,
or an empty / None answer the printer shows as `<invalid>` or skips. Numbers are finite and bounded, so a value
such as 1e308 or 10**30 cannot overflow a format or print three hundred digits.
"""

from __future__ import annotations

import math
from typing import Any

#: How describe shows a value of the wrong type.
INVALID = "<invalid>"
#: Beyond this a displayed number is not a real figure (a step, a loss, seconds, GPU-hours).
MAX_NUMBER = 1e15


def mapping(value: Any) -> dict[str, Any]:
    """An object, else an empty one."""
    return value if isinstance(value, dict) else {}


def records(value: Any) -> list[dict[str, Any]]:
    """The objects of a list (anything else in it is skipped); not a list: none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text(value: Any) -> str | None:
    """A string, else None."""
    return value if isinstance(value, str) else None


def texts(value: Any) -> list[str]:
    """The strings of a list (anything else in it is skipped)."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def number(value: Any) -> float | None:
    """A finite int or float (not a bool) of at most MAX_NUMBER in size, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if abs(value) <= MAX_NUMBER else None


def whole(value: Any, low: int = 0, high: int = int(MAX_NUMBER)) -> int | None:
    """An int (not a bool) in [low, high], else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def is_invalid(value: Any, kind: type | tuple[type, ...]) -> bool:
    """Present but not of `kind`: what describe marks `<invalid>` rather than leaving out as absent."""
    return value is not None and not isinstance(value, kind)


__all__ = ["INVALID", "MAX_NUMBER", "is_invalid", "mapping", "number", "records", "text", "texts", "whole"]
