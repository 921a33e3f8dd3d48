"""Reading a document's lines with a bound on each, so one long line cannot exhaust memory.

Why: the formatting and tokenizing steps cost a multiple of the text they hold at once
(a Python string per word, ~30x the bytes). A 100 MB corpus that is a single line
peaked at 3.2 GB and ended in a MemoryError; a 1 GB line would get a pod OOM-killed.
Google's create_pretraining_data.py reads a line whole, but an instance can hold no more
than max_seq_length - 3 tokens of it; here a line longer than MAX_LINE_BYTES is cut into
pieces of at most that many bytes, at the last space or tab before the bound (else at the
bound, on a UTF-8 character boundary), and each piece reads as a line of its own (a
sentence of the ``bert`` format, a paragraph otherwise). 1 MiB is some 200,000 WordPiece
tokens, hundreds of times what one instance takes, so no instance loses text it could
have held; the cut only decides where one sentence ends.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

#: The longest line, in bytes, read as it is (newline excluded); longer lines are cut into pieces this long at most.
MAX_LINE_BYTES = 1 << 20


def _cut(data: bytes, limit: int) -> int:
    """Where to cut ``data`` (longer than ``limit``) so the first piece is at most ``limit`` bytes: after the last
    space or tab within it, else at ``limit`` moved back onto a UTF-8 character's first byte."""
    space = max(data.rfind(b" ", 0, limit), data.rfind(b"\t", 0, limit))
    if space > 0:
        return space + 1
    cut = limit
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # a continuation byte: the character starts earlier
        cut -= 1
    return cut or limit


def read_lines(fh: BinaryIO, start: int, end: int, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of bytes ``[start, end)`` of ``fh`` (without their newlines), none longer than ``max_line_bytes``:
    a longer line comes as several pieces. Reads ``max_line_bytes`` at a time and holds at most twice that."""
    fh.seek(start)
    left = end - start
    buffer = b""
    while True:
        chunk = fh.read(min(max_line_bytes, left)) if left > 0 else b""
        left -= len(chunk)
        buffer += chunk
        lines = buffer.split(b"\n")
        buffer = lines.pop()  # the unfinished line (all of it when there is no newline)
        yield from (piece for line in lines for piece in _pieces(line, max_line_bytes))
        while len(buffer) > max_line_bytes or (not chunk and buffer):
            if len(buffer) <= max_line_bytes:  # the end of the range: the last line, whole
                yield buffer
                return
            cut = _cut(buffer, max_line_bytes)
            yield buffer[:cut]
            buffer = buffer[cut:]
        if not chunk:
            return


def _pieces(line: bytes, limit: int) -> Iterator[bytes]:
    """A line that arrived whole within one read, cut like any other (it is at most twice ``limit``)."""
    while len(line) > limit:
        cut = _cut(line, limit)
        yield line[:cut]
        line = line[cut:]
    yield line
