"""Formatting: the three input formats to documents of sentences, and back.

* ``wikipedia``: WikiExtractor output, ``<doc ...>`` blocks, one paragraph per line;
* ``books``: plain text, one book per file (one document), paragraphs split into
  sentences;
* ``bert``: the text Google's and NVIDIA's ``create_pretraining_data.py`` read, one
  sentence per line and a blank line between documents. Lines are taken as they are
  (not split again), so a corpus already formatted for those scripts gives the same
  documents and sentences here.

Sentence splitting is rule based (no model, no download)."""

from __future__ import annotations

import html
import re

from bert_trainer.prep.lines import MAX_LINE_BYTES

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


def _joined(block: str, max_chars: int) -> list[str]:
    """The wrapped lines of one paragraph joined, as paragraphs of at most about ``max_chars``: a paragraph is split
    and formatted at once, so a paragraph of a million wrapped lines is cut between lines (see prep/lines.py)."""
    out: list[str] = []
    run: list[str] = []
    size = 0
    for line in block.splitlines():
        if run and size + len(line) > max_chars:
            out.append(" ".join(" ".join(run).split()))
            run, size = [], 0
        run.append(line)
        size += len(line) + 1
    if run:
        out.append(" ".join(" ".join(run).split()))
    return out


def book_document(text: str, max_paragraph_chars: int = MAX_LINE_BYTES) -> list[list[str]]:
    """A plain-text book (one per file) is one document; each non-empty line is a
    paragraph (books wrapped at a fixed width read as paragraphs too: blank lines
    separate paragraphs, and wrapped lines are joined, up to ``max_paragraph_chars``)."""
    blocks = re.split(r"\n\s*\n", text)
    if len(blocks) <= 1:  # no blank lines: every line is a paragraph
        paragraphs = text.splitlines()
    else:
        paragraphs = [p for block in blocks for p in _joined(block, max_paragraph_chars)]
    sentences = _paragraph_sentences(paragraphs)
    return [sentences] if sentences else []


def bert_document(text: str) -> list[list[str]]:
    """One document of the ``bert`` format (the text between two blank lines): each
    non-empty line, stripped, is a sentence, as ``create_pretraining_data.py`` reads it."""
    sentences = [ln.strip() for ln in text.splitlines()]
    sentences = [s for s in sentences if s]
    return [sentences] if sentences else []


def window_sentences(window: str, input_format: str) -> list[str]:
    """The whole sentences of a window cut out of a document (a donor's loan, see prep/worker.py):
    the lines cut at both ends and the extractor's tag lines are dropped; the lines between are
    whole paragraphs (or, for ``bert``, sentences)."""
    lines = window.splitlines()[1:-1]
    lines = [ln.strip() for ln in lines if ln.strip() and not _DOC_OPEN.match(ln) and not _DOC_CLOSE.match(ln)]
    if input_format == "bert":
        return lines
    return _paragraph_sentences(lines)


#: How much of a file ``detect_format`` reads.
DETECT_BYTES = 65536

#: The formats ``--input_format`` names; ``auto`` picks one per file with ``detect_format``.
FORMATS = ("wikipedia", "books", "bert")

#: Terminal punctuation, optionally closed by quotes or brackets: how a line that is one sentence ends.
_SENTENCE_END = re.compile(r"""[.!?]["'\u201d\u2019)\]]*$""")
#: The ``bert`` format's document separator: one or more lines that are empty or only spaces (prep/shards.py
#: cuts byte ranges with the same pattern).
BLANK_LINES = re.compile(r"\n(?:[ \t\r]*\n)+")


def detect_format(sample: str, cut: bool = False) -> str:
    """The format of a file from its first bytes (``cut``: the sample stops inside the file).

    ``wikipedia`` when it starts with a ``<doc`` tag. ``bert`` when nearly every line
    (90%, of at least 3) is one whole sentence: it ends with terminal punctuation and
    the splitter does not cut it; and, where blank lines cut the sample into blocks,
    the blocks hold 2 or more lines on average. Otherwise ``books``: a wrapped book has
    lines that stop mid-sentence, and a book of one paragraph per line has lines of
    several sentences or blocks of one line, so neither looks like ``bert``. A sample
    with no blank line at all (a first document longer than the sample) is ``bert``
    when its lines are sentences: a ``bert`` file of one document reads the same as a
    book of one sentence per line, and the blank lines further on then separate
    documents.
    """
    if is_wiki(sample):
        return "wikipedia"
    blocks = [[ln.strip() for ln in b.splitlines() if ln.strip()] for b in BLANK_LINES.split(sample)]
    if cut and len(blocks) > 1:
        blocks = blocks[:-1]  # the sample ends inside a block: do not judge by a cut line
    elif cut and blocks and len(blocks[0]) > 1:
        blocks = [blocks[0][:-1]]
    blocks = [b for b in blocks if b]
    lines = [ln for b in blocks for ln in b]
    if len(lines) < 3 or len(blocks) > 1 and len(lines) < 2 * len(blocks):
        return "books"
    whole = sum(1 for ln in lines if _SENTENCE_END.search(ln) and len(split_sentences(ln)) == 1)
    return "bert" if whole >= 0.9 * len(lines) else "books"


def documents(text: str, input_format: str | None = None, max_paragraph_chars: int = MAX_LINE_BYTES) -> list[list[str]]:
    """Documents (lists of sentences) of one input text in ``input_format`` (detected when None); a book's
    paragraphs are at most about ``max_paragraph_chars`` (its lines are bounded by prep/lines.py)."""
    input_format = input_format or detect_format(text[:DETECT_BYTES], cut=len(text) > DETECT_BYTES)
    if input_format == "wikipedia":
        return wiki_documents(text)
    if input_format == "bert":
        return bert_document(text)
    return book_document(text, max_paragraph_chars)


def to_lines(docs: list[list[str]]) -> str:
    """One sentence per line, a blank line between documents."""
    return "\n\n".join("\n".join(doc) for doc in docs) + ("\n" if docs else "")
