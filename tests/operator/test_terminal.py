"""terminal.py: the one place text from others is made safe for a terminal."""

from __future__ import annotations

import io

from bert_operator.terminal import EscapingWriter, escape, one_line


def test_controls_are_written_visibly_and_lines_kept_only_where_text_has_lines() -> None:
    hostile = "a\x1b]52;c;bWFsd2FyZQ==\x07b\x00\x7f\x85\u202e\u2028\ud800\tc\nd"
    assert escape(hostile) == "a\\x1b]52;c;bWFsd2FyZQ==\\x07b\\x00\\x7f\\x85\\u202e\\u2028\\ud800\tc\nd"
    assert one_line(hostile).endswith("\\ud800\\tc\\nd") and "\n" not in one_line(hostile)
    assert one_line(None) == "" and one_line(5) == "5"
    assert escape("\u200e\u200f\u061c") == "\\u200e\\u200f\\u061c"  # the marks of Trojan Source too (CVE-2021-42574)
    plain = "Grüße, 日本語, emoji 🙂, a\\x1b literal"
    assert escape(plain) == plain == one_line(plain)  # printable text, any script, is left as it is


def test_a_log_is_escaped_across_chunk_boundaries() -> None:
    out = io.BytesIO()
    writer = EscapingWriter(out)
    data = "ü\x1b[2J\r\nok\t1\n".encode() + b"\xff" + "é".encode()[:1]
    for i in range(len(data)):  # one byte at a time: a character split over two chunks is still one character
        writer.write(data[i:i + 1])
    writer.close()
    assert out.getvalue().decode() == "ü\\x1b[2J\\r\nok\t1\n\ufffd\ufffd"
