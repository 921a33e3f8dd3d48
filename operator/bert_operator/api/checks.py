"""Field checks several rules share (sequence lengths, predictions, relative paths), as pure generators.

The generic rules (``api/rules.py``) and each task's own rules (``tasks/``)
yield :class:`FieldError`\\ s through these, so the same mistake reads the same
whichever task made it.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterator

from .errors import FieldError, shown


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


#: Kubernetes' qualified-name part and label-value syntax (apimachinery's validation).
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_MAX = 63


#: Kubernetes' limit on all of an object's annotations together, keys and values (apimachinery's).
ANNOTATIONS_MAX_BYTES = 256 * 1024


def check_label_key(path: str, key: str, kind: str = "label key") -> Iterator[FieldError]:
    """A label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters.

    Annotation keys and resource names are the same qualified names; `kind` names which in the message.
    """
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        yield FieldError(path, f"{kind} prefix must be a DNS subdomain (e.g. example.com), got {shown(key)}")
    elif not name or len(name) > LABEL_VALUE_MAX or not _NAME_PART.match(name):
        yield FieldError(path, f"must be a {kind}: [prefix/]name, the name at most 63 letters, digits, '-', '_' or "
                               f"'.', starting and ending with a letter or digit; got {shown(key)}")


def check_annotations_size(path: str, annotations: dict[str, str]) -> Iterator[FieldError]:
    """All annotations of a pod together fit the API server's 256 KiB, or the pod is refused."""
    size = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        yield FieldError(path, f"annotations total {size} bytes (keys and values), at most {ANNOTATIONS_MAX_BYTES} are allowed")


def check_label_value(path: str, value: str) -> Iterator[FieldError]:
    """A label value: empty, or at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric."""
    if value and (len(value) > LABEL_VALUE_MAX or not _NAME_PART.match(value)):
        yield FieldError(path, "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending "
                               f"with a letter or digit; got {shown(value)}")


def check_uri_path(path: str, uri: str | None) -> Iterator[FieldError]:
    """A storage URI's path stays where it points: no '..' segment (pvc://claim/../../etc climbs out of the claim)."""
    if uri and ".." in uri.split("://", 1)[-1].split("/"):
        yield FieldError(path, f"must not contain '..' segments, got {shown(uri)}")
