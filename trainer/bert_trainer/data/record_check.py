"""Which record file is broken, and where, when TensorFlow says only "truncated record at 9586".

tf.data reads many files interleaved, and its ``DataLossError`` names neither the file
nor the record: a copy cut short (a failed upload, a full disk, a prepare-data run
killed outside its atomic rename) ended a pretraining stage in a traceback and exit 1.
``named_record_errors`` turns that error into ``RecordError`` (exit 2, bad input) naming
the file, the record's index and its byte offset, found by walking the TFRecord framing
of the stage's files (length, masked CRC of the length, data, masked CRC of the data).
The walk runs only after TensorFlow failed, and seeks over the data: it reads 12 bytes
per record, plus the data of the one record TensorFlow's offset points at (its CRC).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from typing import Iterator

HEADER = 12  # uint64 length + uint32 masked CRC of the length
FOOTER = 4  # uint32 masked CRC of the data


class RecordError(ValueError):
    """A record file TensorFlow cannot read; the message names the file and the record."""


def _masked_crc(data: bytes) -> int:
    from bert_trainer.prep.records import _masked, crc32c  # noqa: PLC0415 - the writer's own CRC

    return _masked(crc32c(data))


def find_bad_record(path: str, offset: int | None = None) -> str | None:
    """What is wrong with the TFRecord file at ``path`` ("record 3 at byte 9586: ..."), or None when its framing
    holds (and, with ``offset``, the data CRC of the record starting there)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        index = position = 0
        while position < size:
            header = fh.read(HEADER)
            where = f"record {index} at byte {position}"
            if len(header) < HEADER:
                return f"{where}: truncated (the file ends inside the record's header, at byte {size})"
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                return f"{where}: corrupted (the CRC of the record's length does not match)"
            end = position + HEADER + length + FOOTER
            if end > size:
                return f"{where}: truncated (the record needs {HEADER + length + FOOTER} bytes, the file ends at byte {size})"
            if offset == position:
                data = fh.read(length)
                if struct.unpack("<I", fh.read(FOOTER))[0] != _masked_crc(data):
                    return f"{where}: corrupted (the CRC of the record's data does not match)"
            fh.seek(end)
            index, position = index + 1, end
    return None


_OFFSET = re.compile(r"record at (\d+)")


def describe(files: list[str], message: str) -> str:
    """The error message for TensorFlow's DataLossError ``message`` on ``files``: the first file found broken
    and its record, else TensorFlow's words and how many files were read."""
    found = _OFFSET.search(message)
    offset = int(found.group(1)) if found else None
    for path in files:
        try:
            problem = find_bad_record(path, offset)
        except OSError as exc:
            return f"{path}: cannot read ({exc.strerror})"
        if problem:
            return (f"{path}: {problem}; the file is not a whole TFRecord file: make it again (prepare-data skips "
                    "shards whose final file exists, so delete it first) or remove it")
    first_line = message.strip().splitlines()[0] if message.strip() else "data loss"
    return f"one of the {len(files)} record files ({os.path.dirname(files[0]) if files else ''}): {first_line}"


@contextlib.contextmanager
def named_record_errors(files: list[str]) -> Iterator[None]:
    """Reading ``files`` inside the block: TensorFlow's DataLossError becomes RecordError naming the file."""
    import tensorflow as tf  # noqa: PLC0415 - only the readers of records need it

    try:
        yield
    except tf.errors.DataLossError as exc:
        raise RecordError(describe(files, exc.message)) from None
