"""Training instances: BERT's sentence-pair packing, next-sentence labels and
masked LM (Devlin et al. 2018; the published create_pretraining_data recipe),
written here from the description:

* Segments (sentences) of a document are gathered until ``target`` tokens, where
  target is ``max_seq_length - 3`` or, with probability ``short_seq_prob``, a
  random length in [2, max_seq_length - 3] (drawn once per document and pass).
* A random prefix of the gathered segments is sentence A. With probability 0.5
  (always when only one segment was gathered) sentence B comes from a random
  position of another document (label 1) and the unused segments are put back;
  otherwise B is the rest of the gathered segments (label 0). "Another document"
  is drawn uniformly from the shard's other documents and its donors (documents
  of other shards, see prep/shards.py), never A's own, unless the corpus has one
  document only (then, as in Google's script, B comes from A's document).
* The pair is trimmed to fit, one token at a time from the longer side (B on a
  tie), randomly front or back.
* ``round(len * masked_lm_prob)`` positions (at least 1, at most
  ``max_predictions_per_seq``) are predicted; [CLS]/[SEP] never. Each is replaced
  by [MASK] 80%, kept 10%, a random vocab id 10%. Whole-word masking picks whole
  words (a token and its ``##`` continuations) as units.

Where the time goes, and why it is split this way: only the packing decisions
(which sentences make A and B) are sequential, one Python step per instance, on
the sentences' token offsets; no token is touched there. Everything per token is
done for a block of instances at once in numpy (``Batch``): trimming (how many
tokens leave each side depends only on the two lengths, and which end each comes
from is a fair coin per token, so a binomial draw per side gives the same
distribution as the token-by-token loop), gathering the tokens into a padded
matrix, and masking (a random key per candidate position, the smallest keys
chosen). Whole-word masking keeps a per-instance loop (a word is chosen or
skipped as a unit, which does not vectorise), so it is slower.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import random

import numpy as np

from bert_trainer.prep.native import core

#: Instances processed together in numpy: big enough to amortise numpy's per-call cost, small enough
#: that the [block, max_seq_length] temporaries stay a few MB.
BLOCK = 4096


@dataclasses.dataclass(frozen=True)
class Settings:
    max_seq_length: int
    max_predictions_per_seq: int
    masked_lm_prob: float
    short_seq_prob: float
    dupe_factor: int
    whole_word_mask: bool = False


@dataclasses.dataclass
class SpecialIds:
    cls: int
    sep: int
    mask: int
    vocab_size: int
    is_continuation: list[bool]  # id -> token starts with "##"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The token ids of a shard's documents (then its donors) in one flat array.

    ``offsets[k]`` is where sentence k starts in ``tokens`` (one more entry: the end);
    ``doc_sentences[d]`` is document d's first sentence (one more entry: the end).
    Documents from ``own`` on are donors: they only lend random next sentences."""

    tokens: np.ndarray
    offsets: list[int]
    doc_sentences: list[int]
    own: int

    @classmethod
    def from_documents(cls, docs: list[list[list[int]]], donors: list[list[list[int]]] | None = None) -> "Corpus":
        """From documents of token-id sentences (empty sentences and documents removed beforehand)."""
        every = [*docs, *(donors or [])]
        lengths = [len(s) for doc in every for s in doc]
        offsets = [0, *np.cumsum(lengths, dtype=np.int64).tolist()]
        doc_sentences = [0, *np.cumsum([len(doc) for doc in every], dtype=np.int64).tolist()]
        tokens = np.fromiter(itertools.chain.from_iterable(s for doc in every for s in doc), dtype=np.int32,
                             count=offsets[-1])
        return cls(tokens, offsets, doc_sentences, len(docs))

    @classmethod
    def from_flat(cls, tokens: np.ndarray, lengths: np.ndarray, doc_counts: list[int], own: int) -> "Corpus":
        """From the ids of every sentence one after the other, each sentence's length and each document's
        number of sentences (the first ``own`` documents are the shard's, the rest donors). Empty sentences,
        then documents left empty, are dropped, as create_pretraining_data.py drops them."""
        keep = lengths > 0
        doc_of = np.repeat(np.arange(len(doc_counts)), doc_counts)
        kept = np.bincount(doc_of[keep], minlength=len(doc_counts))
        nonempty = kept > 0
        offsets = [0, *np.cumsum(lengths[keep]).tolist()]
        doc_sentences = [0, *np.cumsum(kept[nonempty]).tolist()]
        return cls(tokens, offsets, doc_sentences, int(nonempty[:own].sum()))


@dataclasses.dataclass
class Batch:
    """Instances as padded arrays: what a record holds, before encoding."""

    input_ids: np.ndarray  # [n, max_seq_length] int32, masked, 0-padded
    lengths: np.ndarray  # [n] real tokens ([CLS] A [SEP] B [SEP])
    a_lengths: np.ndarray  # [n] tokens of A (segment 0 is [CLS] A [SEP])
    positions: np.ndarray  # [n, max_predictions_per_seq] sorted, 0-padded
    masked_ids: np.ndarray  # [n, max_predictions_per_seq] original ids at positions, 0-padded
    n_predictions: np.ndarray  # [n]
    next_sentence_labels: np.ndarray  # [n] 1: B is random

    def __len__(self) -> int:
        return len(self.lengths)

    def instance(self, i: int) -> tuple:
        """Instance ``i`` unpadded: (input_ids, segment_ids, positions, masked ids, next sentence label)."""
        n, k, la = int(self.lengths[i]), int(self.n_predictions[i]), int(self.a_lengths[i])
        return (self.input_ids[i, :n].tolist(), [0] * (la + 2) + [1] * (n - la - 2), self.positions[i, :k].tolist(),
                self.masked_ids[i, :k].tolist(), int(self.next_sentence_labels[i]))


def numpy_rng(key: str) -> np.random.Generator:
    """A numpy generator seeded from a string (the shard's seed key), the same on every platform."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def _pairs(corpus: Corpus, s: Settings, rng: random.Random) -> np.ndarray:
    """The packing decisions of ``dupe_factor`` passes: rows (a_start, a_len, b_start, b_len, label) into
    ``corpus.tokens``, untrimmed. The compiled core's loop where it is built (``prep/native.py``): it draws from
    a copy of ``rng``'s state exactly as ``rng.random()`` would and hands the advanced state back, so the rows
    and every later draw are the same as ``_pairs_python``'s."""
    native = core()
    if native is None:
        return _pairs_python(corpus, s, rng)
    version, state, gauss = rng.getstate()
    rows, state = native.pairs(np.asarray(corpus.offsets, np.int64), np.asarray(corpus.doc_sentences, np.int64),
                               corpus.own, s.dupe_factor, s.max_seq_length - 3, s.short_seq_prob, state)
    rng.setstate((version, state, gauss))
    return np.frombuffer(rows, np.int64).reshape(-1, 5)


def _pairs_python(corpus: Corpus, s: Settings, rng: random.Random) -> np.ndarray:
    """``_pairs`` in Python: the only per-instance Python step of this module; it never touches a token."""
    off, docs, sources = corpus.offsets, corpus.doc_sentences, len(corpus.doc_sentences) - 1
    max_tokens = s.max_seq_length - 3
    out: list[tuple[int, int, int, int, int]] = []
    # int(rand() * n) for a uniform draw from range(n): random.randrange and randint cost ~2 us each in Python.
    append, rand, bisect_left = out.append, rng.random, bisect.bisect_left
    for _ in range(s.dupe_factor):
        for index in range(corpus.own):
            first, last = docs[index], docs[index + 1]
            target = 2 + int(rand() * (max_tokens - 1)) if rand() < s.short_seq_prob else max_tokens
            start = i = first
            while i < last:
                if i == last - 1 or off[i + 1] - off[start] >= target:
                    n_chunk = i - start + 1
                    a_end = start + (1 if n_chunk < 2 else 1 + int(rand() * (n_chunk - 1)))
                    a0, a1 = off[start], off[a_end]
                    if n_chunk == 1 or rand() < 0.5:
                        other = index
                        if sources > 1:  # uniform over the other documents: one draw, never A's own
                            other = int(rand() * (sources - 1))
                            other += other >= index
                        r_first = docs[other]
                        r_last = docs[other + 1]
                        j = r_first + int(rand() * (r_last - r_first))
                        # sentences from j on until B holds target - len(A) tokens (at least one sentence)
                        k = bisect_left(off, off[j] + target - (a1 - a0), j + 1, r_last)
                        append((a0, a1 - a0, off[j], off[k] - off[j], 1))
                        i = a_end - 1  # the unused segments start the next chunk
                    else:
                        append((a0, a1 - a0, a1, off[i + 1] - a1, 0))
                    start = i + 1
                i += 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 5)


def _trim(la: np.ndarray, lb: np.ndarray, max_tokens: int, nprng: np.random.Generator):
    """Lengths after trimming to ``max_tokens`` and tokens removed from the front of each side.

    The token-by-token loop removes from the longer side, B on a tie: first the
    difference from the longer side, then alternately B, A, B, ... So the counts
    per side follow from the lengths, and each removal's end is a fair coin."""
    excess = np.maximum(la + lb - max_tokens, 0)
    first = np.minimum(excess, np.abs(la - lb))
    rest = excess - first
    ra = np.where(la > lb, first, 0) + rest // 2
    rb = np.where(la > lb, 0, first) + rest - rest // 2
    return la - ra, lb - rb, nprng.binomial(ra, 0.5), nprng.binomial(rb, 0.5)


def _mask_block(tokens: np.ndarray, n: np.ndarray, la: np.ndarray, s: Settings, ids: SpecialIds,
                nprng: np.random.Generator):
    """Mask a block in place; returns (sorted positions, original ids, number predicted), 0-padded."""
    rows, width = tokens.shape
    p = s.max_predictions_per_seq
    j = np.arange(width)
    candidate = (j >= 1) & (j < n[:, None] - 1) & (j != la[:, None] + 1)  # never [CLS]/[SEP]/padding
    k = np.minimum(np.minimum(p, np.maximum(1, np.rint(n * s.masked_lm_prob).astype(np.int64))),
                   candidate.sum(axis=1))
    # Each position's key with the position itself as the tie-break, in one integer: numpy's float32 draws are
    # multiples of 2**-24, so the product is exact. The k smallest keys are chosen, the lower position on a tie,
    # exactly as the compiled core chooses them (_native.c: block).
    keys = (nprng.random((rows, width), dtype=np.float32) * np.float32(1 << 24)).astype(np.int64) << 16 | j
    keys[~candidate] = np.int64(1) << 41
    if p < width:
        picked = np.argpartition(keys, p - 1, axis=1)[:, :p]
    else:
        picked = np.broadcast_to(j, (rows, width))[:, :p].copy()
    picked = np.take_along_axis(picked, np.argsort(np.take_along_axis(keys, picked, axis=1), axis=1), axis=1)
    valid = np.arange(picked.shape[1]) < k[:, None]
    positions = np.sort(np.where(valid, picked, width), axis=1)
    valid = positions < width
    positions = np.where(valid, positions, 0)
    row = np.broadcast_to(np.arange(rows)[:, None], positions.shape)
    original = np.where(valid, tokens[row, positions], 0)
    r = nprng.random(positions.shape)
    replaced = np.where(r < 0.8, ids.mask, np.where(r >= 0.9, nprng.integers(0, ids.vocab_size, positions.shape),
                                                    original))
    tokens[row[valid], positions[valid]] = replaced[valid]
    return _pad(positions, p), _pad(original, p), k


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    return a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1])))


def _mask_block_whole_words(tokens: np.ndarray, n: np.ndarray, la: np.ndarray, s: Settings, ids: SpecialIds,
                            rng: random.Random):
    """Whole-word masking, one instance at a time (see the module docstring)."""
    p = s.max_predictions_per_seq
    positions = np.zeros((len(n), p), np.int64)
    original = np.zeros((len(n), p), np.int64)
    counts = np.zeros(len(n), np.int64)
    for r in range(len(n)):
        row = tokens[r, :n[r]].tolist()
        masked, chosen, labels = _mask_whole_words(row, int(la[r]), s, ids, rng)
        tokens[r, :n[r]] = masked
        positions[r, :len(chosen)], original[r, :len(chosen)], counts[r] = chosen, labels, len(chosen)
    return positions, original, counts


def _mask_whole_words(tokens: list[int], a_len: int, s: Settings, ids: SpecialIds, rng: random.Random):
    """Mask ``[CLS] A [SEP] B [SEP]`` by whole words. Returns (masked tokens, sorted positions, original ids)."""
    n_tokens = len(tokens)
    cont = ids.is_continuation
    groups: list[list[int]] = []
    for i in [*range(1, a_len + 1), *range(a_len + 2, n_tokens - 1)]:  # never [CLS]/[SEP]
        if groups and cont[tokens[i]] and groups[-1][-1] == i - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    num_to_predict = min(s.max_predictions_per_seq, max(1, int(round(n_tokens * s.masked_lm_prob))))
    out = list(tokens)
    chosen: list[int] = []
    rand = rng.random
    n = len(groups)
    for k in range(n):  # a lazy Fisher-Yates shuffle: groups in random order until enough are chosen
        if len(chosen) >= num_to_predict:
            break
        j = k + int(rand() * (n - k))
        groups[k], groups[j] = groups[j], groups[k]
        if len(chosen) + len(groups[k]) > num_to_predict:
            continue
        for pos in groups[k]:
            r = rand()
            if r < 0.8:
                out[pos] = ids.mask
            elif r >= 0.9:
                out[pos] = int(rand() * ids.vocab_size)
            chosen.append(pos)
    chosen.sort()
    return out, chosen, [tokens[p] for p in chosen]


def _block(corpus: Corpus, pairs: np.ndarray, s: Settings, ids: SpecialIds, rng: random.Random,
           nprng: np.random.Generator) -> Batch:
    width = s.max_seq_length
    if width > 65535:  # positions are 16 bits in the masking keys
        raise ValueError(f"max_seq_length {width} is over 65535")
    la, lb, a_front, b_front = _trim(pairs[:, 1], pairs[:, 3], width - 3, nprng)
    keep = (la > 0) & (lb > 0)
    la, lb, a0, b0, label = la[keep], lb[keep], (pairs[:, 0] + a_front)[keep], (pairs[:, 2] + b_front)[keep], \
        pairs[keep, 4]
    n = la + lb + 3
    native = core()
    if native is not None and not s.whole_word_mask:
        return _block_native(native, corpus, la, lb, a0, b0, n, label, s, ids, nprng)
    j = np.arange(width)
    source = np.where(j <= la[:, None], a0[:, None] + j - 1, b0[:, None] + j - la[:, None] - 2)
    tokens = corpus.tokens[np.clip(source, 0, max(len(corpus.tokens) - 1, 0))] if len(corpus.tokens) else \
        np.zeros(source.shape, np.int32)
    tokens[:, 0] = ids.cls
    tokens[(j == la[:, None] + 1) | (j == n[:, None] - 1)] = ids.sep
    tokens[j >= n[:, None]] = 0
    if s.whole_word_mask:
        positions, original, k = _mask_block_whole_words(tokens, n, la, s, ids, rng)
    else:
        positions, original, k = _mask_block(tokens, n, la, s, ids, nprng)
    return Batch(tokens, n, la, positions, original, k, label)


def _block_native(native, corpus: Corpus, la: np.ndarray, lb: np.ndarray, a0: np.ndarray, b0: np.ndarray,
                  n: np.ndarray, label: np.ndarray, s: Settings, ids: SpecialIds, nprng: np.random.Generator) -> Batch:
    """``_block``'s gathering and ``_mask_block``'s masking in the compiled core: the same draws from ``nprng``, in
    the same order and shapes (keys, the 80/10/10 draw, the random ids), and the same instances."""
    rows, width, p = len(n), s.max_seq_length, s.max_predictions_per_seq
    q = min(p, width)
    keys = nprng.random((rows, width), dtype=np.float32)
    r = nprng.random((rows, q))
    random_ids = nprng.integers(0, ids.vocab_size, (rows, q))
    i64 = np.int64
    tokens, positions, original, k = native.block(
        rows, width, q, np.ascontiguousarray(corpus.tokens, np.int32), np.ascontiguousarray(a0, i64),
        np.ascontiguousarray(la, i64), np.ascontiguousarray(b0, i64), np.ascontiguousarray(lb, i64), keys, r,
        np.ascontiguousarray(random_ids, i64), p, s.masked_lm_prob, ids.cls, ids.sep, ids.mask)
    return Batch(np.frombuffer(tokens, np.int32).reshape(rows, width), n, la,
                 np.frombuffer(positions, i64).reshape(rows, p), np.frombuffer(original, i64).reshape(rows, p),
                 np.frombuffer(k, i64), label)


def create_batches(corpus: Corpus, s: Settings, ids: SpecialIds, rng: random.Random,
                   nprng: np.random.Generator):
    """Yield the shard's instances, shuffled, in Batches of at most BLOCK."""
    pairs = _pairs(corpus, s, rng)
    pairs = pairs[nprng.permutation(len(pairs))]
    for start in range(0, len(pairs), BLOCK):
        batch = _block(corpus, pairs[start:start + BLOCK], s, ids, rng, nprng)
        if len(batch):
            yield batch


def create_instances(docs: list[list[list[int]]], s: Settings, ids: SpecialIds, rng: random.Random,
                     donors: list[list[list[int]]] | None = None, nprng: np.random.Generator | None = None):
    """The instances of ``dupe_factor`` passes over ``docs`` (lists of token-id sentences), shuffled, as
    unpadded tuples (input_ids, segment_ids, masked_lm_positions, masked_lm_ids, next_sentence_label):
    ``create_batches`` for tests and tools. ``donors`` (documents of other shards) only lend random next
    sentences. Empty sentences and documents must be removed beforehand."""
    nprng = nprng or np.random.default_rng(rng.getrandbits(64))
    corpus = Corpus.from_documents(docs, donors)
    return [b.instance(i) for b in create_batches(corpus, s, ids, rng, nprng) for i in range(len(b))]
