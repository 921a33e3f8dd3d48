"""Kubernetes resource quantities as numbers, so that a policy can compare `workers x cpu` with its limit.

Only the forms the job's `Quantity` pattern admits (digits, an optional fraction, an optional SI or binary suffix)
are read; exact decimal arithmetic, because `500m x 3` must be exactly `1.5` and not a float near it.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .models import QUANTITY_PATTERN

_SUFFIXES = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
#: The job's own Quantity pattern (group 2 is the suffix), so what validates is what can be read.
_FORM = re.compile(QUANTITY_PATTERN)


def _suffix(text: str) -> str:
    match = _FORM.match(text)
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return match.group(2) or ""


def quantity(text: str) -> Decimal:
    """The amount a quantity such as '500m', '96' or '700Gi' stands for (cores, or bytes); ValueError otherwise."""
    suffix = _suffix(text)
    return Decimal(text[:len(text) - len(suffix)]) * _SUFFIXES[suffix]


def shown_quantity(amount: Decimal, like: str) -> str:
    """`amount` in the unit of the quantity `like` (its suffix), as a user wrote it: 96 x 700Gi is '67200Gi'."""
    suffix = _suffix(like)
    value = (amount / _SUFFIXES[suffix]).normalize()
    return f"{value:f}{suffix}"
