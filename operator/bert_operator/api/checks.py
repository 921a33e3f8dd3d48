"""Field checks several rules share (sequence lengths, predictions, relative paths), as pure generators.

The generic rules (``api/rules.py``) and each task's own rules (``tasks/``)
yield :class:`FieldError`\\ s through these, so the same mistake reads the same
whichever task made it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Iterator

from .errors import FieldError


def check_seq(path: str, max_seq_length: int, max_positions: int) -> Iterator[FieldError]:
    """A sequence must fit the model's position embeddings."""
    if max_seq_length > max_positions:
        yield FieldError(
            f"{path}.maxSeqLength",
            f"must be <= the model's max_position_embeddings ({max_positions}), got {max_seq_length}",
        )


def check_predictions(path: str, max_predictions: int, max_seq_length: int) -> Iterator[FieldError]:
    """No more masked positions than tokens."""
    if max_predictions > max_seq_length:
        yield FieldError(
            f"{path}.maxPredictionsPerSeq",
            f"must be <= maxSeqLength ({max_seq_length}), got {max_predictions}",
        )


def check_relative(path: str, value: str | None) -> Iterator[FieldError]:
    """A path inside the dataset: relative, without '..', so a job never reads outside its dataset."""
    if value is None:
        return
    pure = PurePosixPath(value)
    if not value or pure.is_absolute() or ".." in pure.parts:
        yield FieldError(path, f"must be a relative path inside the dataset without '..', got {value!r}")
