"""WordPiece with a per-process cache of words, for ASCII sentences.

Why: tokenization was half of prepare-data's CPU time once instances and records
were vectorised. Hugging Face's tokenizer normalises, pre-tokenizes and runs the
greedy WordPiece match for every word of every sentence (about 2 MB/s here), but
a corpus repeats its words: after a few shards nearly every word has been seen.

For a sentence of ASCII characters BERT's pipeline reduces to three string steps
that Python's C string methods do exactly:

* ``BertNormalizer``: control characters (ASCII 0-31 but tab, newline and
  carriage return, and 127) are removed; lower-casing (uncased vocabs only);
  accent stripping and CJK spacing do nothing to ASCII;
* ``BertPreTokenizer``: words are maximal runs of letters and digits; every other
  printable ASCII character (33-47, 58-64, 91-96, 123-126, the ranges BERT calls
  punctuation, ``_`` included) is a word of its own; whitespace separates;
* WordPiece of a word depends on the word only, so its ids are cached.

Words not yet cached are sent to the real tokenizer in one batch per call, so the
ids are always the tokenizer's own. Sentences with any non-ASCII character go to
the tokenizer whole (Unicode normalisation and punctuation classes are its job).
``tests/data/test_word_cache.py`` checks the equality on every ASCII character and
on real text.
"""

from __future__ import annotations

import itertools
import re

#: ASCII control characters BertNormalizer removes (tab, newline and carriage return are whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORDS_UNCASED = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
_WORDS_CASED = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]")


class CachedWordPiece:
    """``encode(sentences)`` gives what ``tokenizer.encode_batch(..., add_special_tokens=False)`` gives.

    ``max_words`` bounds the cache (a word and its ids take ~150 bytes, so the
    default is ~30 MB); once full, new words are still tokenized, just not kept."""

    def __init__(self, tokenizer, lower_case: bool, max_words: int = 200_000) -> None:
        self._tokenizer = getattr(tokenizer, "_tokenizer", tokenizer)  # the Tokenizer inside the wrapper
        self._encode = getattr(self._tokenizer, "encode_batch_fast", None) or self._tokenizer.encode_batch
        self._lower = lower_case
        self._words = _WORDS_UNCASED if lower_case else _WORDS_CASED
        self._cache: dict[str, list[int]] = {}
        self._max_words = max_words
        self.misses = 0  # words sent to the tokenizer

    def _split(self, sentence: str) -> list[str]:
        if not sentence.isprintable():  # a control character (or tab, newline: kept as whitespace)
            sentence = _CONTROL.sub("", sentence)
        return self._words.findall(sentence.lower() if self._lower else sentence)

    def encode(self, sentences: list[str]) -> list[list[int]]:
        if not sentences:
            return []
        words: list[list[str] | None] = [self._split(s) if s.isascii() else None for s in sentences]
        cache = self._cache
        missing = list({w for ws in words if ws is not None for w in ws if w not in cache})
        fresh = dict(zip(missing, (e.ids for e in self._encode(missing, add_special_tokens=False)))) if missing \
            else {}
        room = self._max_words - len(cache)
        if room > 0:
            cache.update(itertools.islice(fresh.items(), room))
        self.misses += len(missing)
        whole = [s for s, ws in zip(sentences, words) if ws is None]
        whole_ids = iter([e.ids for e in self._encode(whole, add_special_tokens=False)] if whole else [])
        out: list[list[int]] = []
        for ws in words:
            if ws is None:
                out.append(next(whole_ids))
                continue
            ids: list[int] = []
            for w in ws:
                got = cache.get(w)
                ids += got if got is not None else fresh[w]
            out.append(ids)
        return out
