"""Training instances: BERT's sentence-pair packing, next-sentence labels and
masked LM (Devlin et al. 2018; the published create_pretraining_data recipe),
written here from the description:

* Segments (sentences) of a document are gathered until ``target`` tokens, where
  target is ``max_seq_length - 3`` or, with probability ``short_seq_prob``, a
  random length in [2, max_seq_length - 3].
* A random prefix of the gathered segments is sentence A. With probability 0.5
  (always when only one segment was gathered) sentence B comes from a random
  position of another document (label 1) and the unused segments are put back;
  otherwise B is the rest of the gathered segments (label 0). "Another document"
  is drawn uniformly from the shard's other documents and its donors (documents
  of other shards, see prep/shards.py), never A's own, unless the corpus has one
  document only (then, as in Google's script, B comes from A's document).
* The pair is trimmed to fit, one token at a time from the longer side, randomly
  front or back.
* ``round(len * masked_lm_prob)`` positions (at least 1, at most
  ``max_predictions_per_seq``) are predicted; [CLS]/[SEP] never. Each is replaced
  by [MASK] 80%, kept 10%, a random vocab id 10%. Whole-word masking picks whole
  words (a token and its ``##`` continuations) as units.
"""

from __future__ import annotations

import dataclasses
import random


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


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _mask(tokens: list[int], a_len: int, s: Settings, ids: SpecialIds, rng: random.Random):
    """Mask ``[CLS] A [SEP] B [SEP]`` (A has ``a_len`` tokens). Returns (masked tokens,
    sorted positions, original ids at those positions)."""
    n_tokens = len(tokens)
    candidates = [*range(1, a_len + 1), *range(a_len + 2, n_tokens - 1)]  # never [CLS]/[SEP]
    if s.whole_word_mask:
        cont = ids.is_continuation
        groups: list = []
        for i in candidates:
            if groups and cont[tokens[i]] and groups[-1][-1] == i - 1:
                groups[-1].append(i)
            else:
                groups.append([i])
    else:
        groups = candidates
    num_to_predict = min(s.max_predictions_per_seq, max(1, int(round(n_tokens * s.masked_lm_prob))))
    out = list(tokens)
    chosen: list[int] = []
    rand = rng.random
    mask, vocab_size, wwm = ids.mask, ids.vocab_size, s.whole_word_mask
    n = len(groups)
    # A lazy Fisher-Yates shuffle: draw groups in random order only until enough are chosen.
    for k in range(n):
        if len(chosen) >= num_to_predict:
            break
        j = k + int(rand() * (n - k))
        groups[k], groups[j] = groups[j], groups[k]
        group = groups[k] if wwm else (groups[k],)
        if len(chosen) + len(group) > num_to_predict:
            continue
        for pos in group:
            r = rand()
            if r < 0.8:
                out[pos] = mask
            elif r >= 0.9:
                out[pos] = int(rand() * vocab_size)
            # else: keep the original token
            chosen.append(pos)
    chosen.sort()
    return out, chosen, [tokens[p] for p in chosen]


def _instances_from_document(docs: list[list[list[int]]], index: int, s: Settings, ids: SpecialIds,
                             rng: random.Random, sources: int):
    """Instances of ``docs[index]``; random next sentences come from ``docs[:sources]`` (the shard's
    documents, then its donors), never from ``docs[index]`` itself when there is another."""
    doc = docs[index]
    max_tokens = s.max_seq_length - 3
    target = max_tokens
    if rng.random() < s.short_seq_prob:
        target = rng.randint(2, max_tokens)
    chunk: list[list[int]] = []
    length = 0
    i = 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        if i == len(doc) - 1 or length >= target:
            a_end = 1 if len(chunk) < 2 else rng.randint(1, len(chunk) - 1)
            a = [t for seg in chunk[:a_end] for t in seg]
            b: list[int] = []
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random = 1
                want = target - len(a)
                other = index
                if sources > 1:  # uniform over the other documents: one draw, never A's own
                    other = rng.randrange(sources - 1)
                    other += other >= index
                rdoc = docs[other]
                for seg in rdoc[rng.randrange(len(rdoc)):]:
                    b.extend(seg)
                    if len(b) >= want:
                        break
                i -= len(chunk) - a_end  # the unused segments start the next chunk
            else:
                is_random = 0
                b = [t for seg in chunk[a_end:] for t in seg]
            _truncate_pair(a, b, max_tokens, rng)
            if a and b:
                yield _finish(a, b, is_random, s, ids, rng)
            chunk, length = [], 0
        i += 1


def _finish(a, b, is_random: int, s: Settings, ids: SpecialIds, rng: random.Random) -> tuple:
    tokens = [ids.cls, *a, ids.sep, *b, ids.sep]
    segment_ids = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    masked, positions, labels = _mask(tokens, len(a), s, ids, rng)
    return masked, segment_ids, positions, labels, is_random


def create_instances(docs: list[list[list[int]]], s: Settings, ids: SpecialIds, rng: random.Random,
                     donors: list[list[list[int]]] | None = None):
    """Yield (input_ids, segment_ids, masked_lm_positions, masked_lm_ids, next_sentence_label),
    unpadded, for ``dupe_factor`` passes over ``docs`` (lists of token-id sentences),
    shuffled. ``donors`` (documents of other shards) only lend random next sentences.
    Empty sentences and documents must be removed beforehand."""
    out = []
    pool = docs + list(donors or [])
    for _ in range(s.dupe_factor):
        for index in range(len(docs)):
            out.extend(_instances_from_document(pool, index, s, ids, rng, len(pool)))
    rng.shuffle(out)
    return out


def encode_instance(inst: tuple, s: Settings) -> bytes:
    """The padded record of one instance in the standard schema."""
    from bert_trainer.prep.records import padded_pretraining_example  # noqa: PLC0415

    input_ids, segment_ids, positions, labels, is_random = inst
    return padded_pretraining_example(input_ids, segment_ids, positions, labels, is_random, s.max_seq_length,
                                      s.max_predictions_per_seq)
