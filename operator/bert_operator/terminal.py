"""Text that others wrote, made safe to print on a terminal.

A status, an Event, a trainer's error line or a pod's log is written by a tenant's code, so it may carry escape
sequences: an OSC that retitles the window or writes the clipboard, a screen clear, a carriage return that
overwrites what was printed before it, a right-to-left override that reorders a line. kubectl escapes such
characters in what it prints; every printer of the plugin and of `bertjob` goes through this module to do the
same, in one visible, unambiguous form: `\\xNN` for a C0 or C1 control and DEL, `\\uNNNN` for a bidi control, a
line or paragraph separator, or a lone surrogate (which a UTF-8 terminal cannot even be sent). Newlines and tabs
are kept where a text has lines (a log, a multi-line message) and escaped where it must stay on one (a table
cell, a field of describe), so no value can draw a row of its own.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, Protocol

_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
#: Controls in text that keeps its lines: all but newline and tab.
_IN_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
#: Controls in text that must stay on one line: newline and tab too.
_IN_ONE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """`text` with every control character but newline and tab written visibly (`\\x1b`, `\\r`, `\\u202e`)."""
    return _IN_LINES.sub(_visible, text)


def one_line(value: Any) -> str:
    """`value` as one line of safe text (None: empty); newline and tab are written `\\n` and `\\t` too."""
    return "" if value is None else _IN_ONE_LINE.sub(_visible, value if isinstance(value, str) else str(value))


class ByteSink(Protocol):
    """Where bytes go: a binary stream, or anything that writes and flushes bytes (EscapingWriter itself)."""

    def write(self, data: bytes, /) -> Any: ...
    def flush(self) -> Any: ...


class EscapingWriter:
    """A byte stream (a pod's log as it arrives) passed on escaped: decoded as UTF-8 across chunk boundaries
    (an invalid byte becomes U+FFFD, as kubectl shows it), escaped keeping lines and tabs, written as UTF-8."""

    def __init__(self, out: ByteSink) -> None:
        self.out = out
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if text:
            self.out.write(escape(text).encode("utf-8"))

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        """Write what an incomplete last character left (as U+FFFD) and flush."""
        text = self.decoder.decode(b"", final=True)
        if text:
            self.out.write(escape(text).encode("utf-8"))
        self.out.flush()


__all__ = ["EscapingWriter", "escape", "one_line"]
