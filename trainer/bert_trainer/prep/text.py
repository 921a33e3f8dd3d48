"""Formatting: Wikipedia extractor ``<doc ...>`` blocks and plain-text books to
documents of sentences, and the "one sentence per line, blank line between
documents" text form. Sentence splitting is rule based (no model, no download)."""

from __future__ import annotations

import html
import re

# Words that end in a period without ending a sentence (lower case, no period).
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft vs etc al eg ie cf approx dept est fig figs inc ltd co corp no nos vol vols
pp ed eds rev gen col lt sgt capt cmdr adm gov sen rep pres hon messrs mme mlle jan feb mar apr jun jul aug
sep sept oct nov dec ca op viz ch sec art univ assn bros
""".split())

# A candidate boundary: terminal punctuation, optional closing quotes/brackets,
# whitespace, then something that can start a sentence.
_BOUNDARY = re.compile(r"""([.!?]+)(["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]?[A-Z0-9\u00c0-\u00de])""")
_WORD_BEFORE = re.compile(r"(\S+)$")
_SPACES = re.compile(r"\s+")


def _is_abbreviation(text_before: str) -> bool:
    """Whether the word right before a period (``text_before`` ends just before it)
    is an abbreviation or an initial, so the period does not end the sentence."""
    m = _WORD_BEFORE.search(text_before)
    if not m:
        return False
    word = m.group(1).lstrip("\"'(\u201c\u2018[").lower()
    if not word:
        return False
    if word.replace(".", "") in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha():  # an initial: "J. R. R. Tolkien"
        return True
    return "." in word and all(len(p) <= 2 for p in word.split("."))  # "e.g", "U.S", "a.m"


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences. Handles abbreviations and initials,
    decimals and versions (no space after the dot), and closing quotes or brackets
    after the terminal punctuation ('He said "Go." Then...')."""
    text = _SPACES.sub(" ", paragraph).strip()
    if not text:
        return []
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        if m.group(1) == "." and _is_abbreviation(text[start:m.start()]):
            continue
        end = m.end(2)
        sentence = text[start:end].strip()
        if sentence:
            out.append(sentence)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def _paragraph_sentences(lines) -> list[str]:
    sentences: list[str] = []
    for line in lines:
        sentences.extend(split_sentences(line))
    return sentences


#: The extractor's tags stand on lines of their own; a "<doc>" or "</doc>" inside article text is text.
_DOC_OPEN = re.compile(r"^<doc\b[^>]*>", re.MULTILINE)
_DOC_CLOSE = re.compile(r"^</doc>\s*$", re.MULTILINE)
_TITLE = re.compile(r'title="([^"]*)"')


def is_wiki(text: str) -> bool:
    """Wikipedia extractor output starts with a ``<doc`` tag."""
    return text.lstrip()[:4] == "<doc"


def wiki_documents(text: str) -> list[list[str]]:
    """Sentences of each ``<doc ...>...</doc>`` block; the title line that the
    extractor repeats first is dropped, as are empty articles."""
    docs = []
    for block in _DOC_CLOSE.split(text):
        m = _DOC_OPEN.search(block)
        if not m:
            continue
        title = _TITLE.search(m.group(0))
        lines = [ln.strip() for ln in block[m.end():].splitlines()]
        lines = [ln for ln in lines if ln]
        if lines and title and lines[0] == html.unescape(title.group(1)).strip():
            lines = lines[1:]
        sentences = _paragraph_sentences(lines)
        if sentences:
            docs.append(sentences)
    return docs


def book_document(text: str) -> list[list[str]]:
    """A plain-text book (one per file) is one document; each non-empty line is a
    paragraph (books wrapped at a fixed width read as paragraphs too: blank lines
    separate paragraphs, and wrapped lines are joined)."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    if len(paragraphs) <= 1:  # no blank lines: every line is a paragraph
        paragraphs = text.splitlines()
    sentences = _paragraph_sentences(paragraphs)
    return [sentences] if sentences else []


def documents(text: str) -> list[list[str]]:
    """Documents (lists of sentences) of one input text of either kind."""
    return wiki_documents(text) if is_wiki(text) else book_document(text)


def to_lines(docs: list[list[str]]) -> str:
    """One sentence per line, a blank line between documents."""
    return "\n\n".join("\n".join(doc) for doc in docs) + ("\n" if docs else "")
