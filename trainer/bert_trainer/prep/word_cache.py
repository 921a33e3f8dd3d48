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
normalised and pre-tokenized already), so the ids are always the tokenizer's own.

Sentences with non-ASCII characters take the same cache, after the tokenizer's own
normalizer and pre-tokenizer (Unicode normalisation, accents, CJK spacing and
punctuation classes are theirs), run once over all of them joined by a marker
(``MARK``, a punctuation character, so it is a word of its own that marks the
boundary). A sentence that holds the marker itself takes the same three steps alone.
Literal special-token text ("[MASK]" in a corpus) is text on every path, as Google's
``create_pretraining_data.py`` tokenizes it: the Hugging Face tokenizer's whole pipeline
would give the special token's id (its added tokens are matched before normalising).

``encode_flat`` does a whole shard with no Python step per sentence or word: the
ASCII sentences are joined with newlines (a word of their own, mapped to -1), split
by one regex call, looked up with ``map``, and flattened into numpy, where the
newlines give the sentence lengths.
Where prepare-data's compiled core is built (``prep/native.py``), the split of ASCII
text, the lookup and the join run in C (``_native.c``'s ``WordCache``): the same words,
the same ids, no Python object per word once the cache is warm.
``tests/data/test_word_cache.py`` checks the equality, on both paths, on every ASCII
character, on random Unicode text and on real text.
"""

from __future__ import annotations

import itertools
import re
from typing import cast

import numpy as np

from bert_trainer.prep import native

#: ASCII control characters BertNormalizer removes (tab, newline and carriage return are whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORDS_UNCASED = re.compile(r"\n|[a-z0-9]+|[^a-z0-9\s]")
_WORDS_CASED = re.compile(r"\n|[A-Za-z0-9]+|[^A-Za-z0-9\s]")
#: The ids of the newline between two joined sentences (int32 -1): not a token, a boundary.
_BOUNDARY = np.asarray([-1], np.int32).tobytes()
#: What joins non-ASCII sentences: THREE-EM DASH, punctuation (Pd), so BertPreTokenizer makes it a word of its own
#: and no normalisation step changes it; rare in text, and a sentence that has it is encoded alone.
MARK = "\u2e3b"


def _nothing() -> tuple[np.ndarray, np.ndarray]:
    """No ids, no sentences: what encoding an empty group of sentences gives."""
    return np.zeros(0, np.int32), np.zeros(0, np.int64)


class CachedWordPiece:
    """``encode(sentences)`` gives what ``tokenizer.encode_batch(..., add_special_tokens=False)`` gives.

    ``max_words`` bounds the cache (a word and its ids take ~120 bytes, so the
    default is ~25 MB); once full, new words are still tokenized, just not kept."""

    def __init__(self, tokenizer, lower_case: bool, max_words: int = 200_000) -> None:
        self._tokenizer = getattr(tokenizer, "_tokenizer", tokenizer)  # the Tokenizer inside the wrapper
        self._encode = getattr(self._tokenizer, "encode_batch_fast", None) or self._tokenizer.encode_batch
        self._lower = lower_case
        self._words = _WORDS_UNCASED if lower_case else _WORDS_CASED
        self._cache: dict[str, bytes] = {"\n": _BOUNDARY, MARK: _BOUNDARY}  # word -> its ids as int32 bytes
        self._max_words = max_words + 2
        core = native.core()
        self._native = core.WordCache(max_words) if core is not None else None
        self._normalize = self._tokenizer.normalizer.normalize_str
        self._pre_tokenize = self._tokenizer.pre_tokenizer.pre_tokenize_str
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
        if self._native is not None:
            return self._native.words
        return len(self._cache) - 2  # the boundaries are not words

    def encode(self, sentences: list[str]) -> list[list[int]]:
        """The ids of each sentence, as lists."""
        tokens, lengths = self.encode_flat(sentences)
        ends = np.cumsum(lengths)
        return [tokens[e - n:e].tolist() for e, n in zip(ends.tolist(), lengths.tolist())]

    def encode_flat(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all sentences one after the other (int32) and each sentence's number of ids."""
        if not sentences:
            return _nothing()
        # 0: ASCII, one regex; 1: non-ASCII, the tokenizer's normalizer and pre-tokenizer on all at once; 2: alone.
        kinds = [0 if s.isascii() and "\n" not in s else 1 if MARK not in s else 2 for s in sentences]
        if not any(kinds):
            return self._encode_ascii(sentences)
        kind = np.fromiter(kinds, np.int8, count=len(sentences))
        groups = [[s for s, k in zip(sentences, kinds) if k == g] for g in range(3)]
        parts = [self._encode_ascii(groups[0]), self._encode_unicode(groups[1]), self._encode_alone(groups[2])]
        lengths = np.empty(len(sentences), np.int64)
        for g, (_, part_lengths) in enumerate(parts):
            lengths[kind == g] = part_lengths
        starts = np.cumsum(lengths) - lengths
        tokens = np.empty(int(lengths.sum()), np.int32)
        for g, (part, part_lengths) in enumerate(parts):
            if len(part):  # each sentence's ids to its place: a shift per sentence, repeated over its ids
                part_starts = np.cumsum(part_lengths) - part_lengths
                tokens[np.repeat(starts[kind == g] - part_starts, part_lengths) + np.arange(len(part))] = part
        return tokens, lengths

    def _encode_unicode(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sentences without the marker: normalised and pre-tokenized together, then looked up word by word."""
        if not sentences:
            return _nothing()
        text = self._normalize(f" {MARK} ".join(sentences))
        words = [word for word, _ in self._pre_tokenize(text)]
        if self._native is not None:  # words joined by spaces, the markers made newlines: the C split's mode 1
            return self._encode_native(" ".join(words).replace(MARK, "\n"), 1)
        return self._lookup(words)

    def _encode_alone(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sentences that hold the marker: the same steps, one sentence at a time, the marker a word like others."""
        if not sentences:
            return _nothing()
        ids = [np.asarray([i for word, _ in self._pre_tokenize(self._normalize(s)) for i in self._wordpiece([word])[0]],
                          np.int32) for s in sentences]
        return np.concatenate(ids), np.fromiter(map(len, ids), np.int64, count=len(ids))

    def _encode_ascii(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not sentences:
            return _nothing()
        text = "\n".join(sentences)
        if _CONTROL.search(text):
            text = _CONTROL.sub("", text)
        if self._lower:
            text = text.lower()
        if self._native is not None:
            return self._encode_native(text, 0)
        return self._lookup(self._words.findall(text))

    def _encode_native(self, text: str, mode: int) -> tuple[np.ndarray, np.ndarray]:
        """The compiled cache's three steps: the words it lacks, their WordPiece ids added, the lookup."""
        assert self._native is not None
        missing = self._native.missing(text, mode)
        if missing:
            self.misses += len(missing)
            self._native.add(missing, [np.asarray(pieces, np.int32).tobytes() for pieces in self._wordpiece(missing)])
        ids, lengths = self._native.encode(text, mode)
        return np.frombuffer(ids, np.int32), np.frombuffer(lengths, np.int64)

    def _lookup(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Normalised, pre-tokenized words (boundaries between sentences included) to the sentences' ids:
        from the cache, the missing ones through WordPiece first."""
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
