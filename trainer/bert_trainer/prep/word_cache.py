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

Words not yet cached are sent to the real tokenizer's WordPiece model (they are
normalised and pre-tokenized already), so the ids are always the tokenizer's own. Sentences with any non-ASCII character go to
the tokenizer whole (Unicode normalisation and punctuation classes are its job).

``encode_flat`` does a whole shard with no Python step per sentence or word: the
ASCII sentences are joined with newlines (a word of their own, mapped to -1), split
by one regex call, looked up with ``map``, and flattened into numpy, where the
newlines give the sentence lengths.
``tests/data/test_word_cache.py`` checks the equality on every ASCII character and
on real text.
"""

from __future__ import annotations

import itertools
import re
from typing import cast

import numpy as np

#: ASCII control characters BertNormalizer removes (tab, newline and carriage return are whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORDS_UNCASED = re.compile(r"\n|[a-z0-9]+|[^a-z0-9\s]")
_WORDS_CASED = re.compile(r"\n|[A-Za-z0-9]+|[^A-Za-z0-9\s]")
#: The ids of the newline between two joined sentences (int32 -1): not a token, a boundary.
_BOUNDARY = np.asarray([-1], np.int32).tobytes()


class CachedWordPiece:
    """``encode(sentences)`` gives what ``tokenizer.encode_batch(..., add_special_tokens=False)`` gives.

    ``max_words`` bounds the cache (a word and its ids take ~120 bytes, so the
    default is ~25 MB); once full, new words are still tokenized, just not kept."""

    def __init__(self, tokenizer, lower_case: bool, max_words: int = 200_000) -> None:
        self._tokenizer = getattr(tokenizer, "_tokenizer", tokenizer)  # the Tokenizer inside the wrapper
        self._encode = getattr(self._tokenizer, "encode_batch_fast", None) or self._tokenizer.encode_batch
        self._lower = lower_case
        self._words = _WORDS_UNCASED if lower_case else _WORDS_CASED
        self._cache: dict[str, bytes] = {"\n": _BOUNDARY}  # word -> its ids as int32 bytes
        self._max_words = max_words + 1
        self.misses = 0  # words sent to the tokenizer

    def _wordpiece(self, words: list[str]) -> list[list[int]]:
        """WordPiece ids of words that are already normalised and pre-tokenized (ASCII words of ``_split``):
        the tokenizer's model alone, a quarter of the time of its whole pipeline on one-word inputs."""
        model = getattr(self._tokenizer, "model", None)
        if model is None or not hasattr(model, "tokenize"):
            return [e.ids for e in self._encode(words, add_special_tokens=False)]
        tokenize = model.tokenize
        return [[t.id for t in tokenize(w)] for w in words]

    @property
    def cached_words(self) -> int:
        return len(self._cache) - 1  # the boundary is not a word

    def encode(self, sentences: list[str]) -> list[list[int]]:
        """The ids of each sentence, as lists."""
        tokens, lengths = self.encode_flat(sentences)
        ends = np.cumsum(lengths)
        return [tokens[e - n:e].tolist() for e, n in zip(ends.tolist(), lengths.tolist())]

    def encode_flat(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all sentences one after the other (int32) and each sentence's number of ids."""
        if not sentences:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        ascii_ok = [s.isascii() and "\n" not in s for s in sentences]
        if all(ascii_ok):
            return self._encode_ascii(sentences)
        fast = [s for s, ok in zip(sentences, ascii_ok) if ok]
        slow = [s for s, ok in zip(sentences, ascii_ok) if not ok]
        fast_tokens, fast_lengths = self._encode_ascii(fast) if fast else (np.zeros(0, np.int32), np.zeros(0, np.int64))
        slow_ids = [e.ids for e in self._encode(slow, add_special_tokens=False)]
        slow_lengths = np.fromiter(map(len, slow_ids), np.int64, count=len(slow_ids))
        slow_tokens = np.fromiter(itertools.chain.from_iterable(slow_ids), np.int32, count=int(slow_lengths.sum()))
        ok = np.fromiter(ascii_ok, bool, count=len(sentences))
        lengths = np.empty(len(sentences), np.int64)
        lengths[ok], lengths[~ok] = fast_lengths, slow_lengths
        starts = np.cumsum(lengths) - lengths
        tokens = np.empty(int(lengths.sum()), np.int32)
        for part, part_lengths, where in ((fast_tokens, fast_lengths, ok), (slow_tokens, slow_lengths, ~ok)):
            if len(part):  # each sentence's ids to its place: a shift per sentence, repeated over its ids
                part_starts = np.cumsum(part_lengths) - part_lengths
                tokens[np.repeat(starts[where] - part_starts, part_lengths) + np.arange(len(part))] = part
        return tokens, lengths

    def _encode_ascii(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        text = "\n".join(sentences)
        if _CONTROL.search(text):
            text = _CONTROL.sub("", text)
        words = self._words.findall(text.lower() if self._lower else text)
        cache = self._cache
        ids = list(map(cache.get, words))  # each word's ids as int32 bytes, None when not cached
        misses: list[int] = []
        k = -1
        try:
            while True:  # list.index scans in C; misses are few once the cache is warm
                k = ids.index(None, k + 1)
                misses.append(k)
        except ValueError:
            pass
        if misses:
            missing = list({words[k] for k in misses})
            fresh = {w: np.asarray(pieces, np.int32).tobytes() for w, pieces in zip(missing, self._wordpiece(missing))}
            self.misses += len(missing)
            room = self._max_words - len(cache)
            if room > 0:
                cache.update(itertools.islice(fresh.items(), room))
            for k in misses:
                ids[k] = fresh[words[k]]
        flat = np.frombuffer(b"".join(cast("list[bytes]", ids)), np.int32)  # every miss filled above
        boundaries = np.flatnonzero(flat == -1)
        ends = np.append(boundaries, len(flat))
        lengths = ends - np.concatenate(([0], boundaries + 1))
        return (flat[flat != -1] if len(boundaries) else flat.copy()), lengths.astype(np.int64)
