"""The word cache gives the Hugging Face tokenizer's ids exactly: on every ASCII character in random
strings, cased and uncased, with a full and a tiny cache, and on real English (SQuAD's dev contexts,
non-ASCII included)."""

from __future__ import annotations

import json
import random

import pytest

from bert_trainer.prep.text import split_sentences
from bert_trainer.prep.vocab import make_tokenizer
from bert_trainer.prep.word_cache import CachedWordPiece
from tests.conftest import REPO

SQUAD_DEV = REPO.parent / "shared" / "data" / "squad" / "dev-v1.1.json"


def reference(tokenizer, sentences: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(sentences, add_special_tokens=False)]


def random_ascii(rng: random.Random, vocab_words: list[str]) -> str:
    """Words of the vocab in mixed case, glued to digits, punctuation, control characters and whitespace of
    every kind, and now and then a run of 101+ letters (past WordPiece's 100 characters per word: [UNK])."""
    parts = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.5:
            word = rng.choice(vocab_words)
            parts.append(word.upper() if rng.random() < 0.2 else word.capitalize() if rng.random() < 0.3 else word)
        elif kind < 0.9:
            parts.append("".join(chr(rng.randrange(128)) for _ in range(rng.randint(1, 6))))
        elif kind < 0.97:
            parts.append(rng.choice(vocab_words) + rng.choice(vocab_words) + str(rng.randrange(1000)))
        else:
            parts.append("a" * rng.randint(99, 103))
    return rng.choice(["", " ", "\t"]).join(parts)


@pytest.mark.parametrize("lower_case", [True, False])
@pytest.mark.parametrize("max_words", [200_000, 10])
def test_every_ascii_character_gives_the_tokenizers_ids(vocab_tokens, lower_case, max_words):
    rng = random.Random(lower_case * 2 + (max_words == 10))
    words = [t for t in vocab_tokens[1000:] if t.isalpha()][:3000]
    sentences = [random_ascii(rng, words) for _ in range(3000)] + ["".join(chr(c) for c in range(128))]
    tokenizer = make_tokenizer(vocab_tokens, lower_case)
    cached = CachedWordPiece(tokenizer, lower_case, max_words=max_words)
    want = reference(tokenizer, sentences)
    assert cached.encode(sentences[:1500]) == want[:1500]
    assert cached.encode(sentences) == want  # the second time most words come from the cache
    assert cached.cached_words <= max_words
    assert any(tokenizer.token_to_id("[UNK]") in ids for ids in want)  # the long runs did reach [UNK]


@pytest.mark.needs_shared("data/squad/dev-v1.1.json")
def test_real_english_gives_the_tokenizers_ids(vocab_tokens):
    articles = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))["data"]
    sentences = [s for a in articles for p in a["paragraphs"] for s in split_sentences(p["context"])]
    assert len(sentences) > 10_000
    non_ascii = sum(not s.isascii() for s in sentences)
    assert 0.05 < non_ascii / len(sentences) < 0.9  # both paths are exercised
    tokenizer = make_tokenizer(vocab_tokens, lower_case=True)
    assert CachedWordPiece(tokenizer, True).encode(sentences) == reference(tokenizer, sentences)
