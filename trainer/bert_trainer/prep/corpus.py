"""A generated corpus in both input formats (tests and bench/data_prep_throughput.py)."""

from __future__ import annotations

import os
import random


def word_list(vocab_tokens: list[str], limit: int = 5000) -> list[str]:
    """Whole words of a vocab (alphabetic, 3+ letters), so text tokenizes to real ids."""
    words = [t for t in vocab_tokens if t.isalpha() and t.isascii() and len(t) >= 3]
    return words[:limit] if words else ["lorem", "ipsum", "dolor", "sit", "amet"]


def _sentence(rng: random.Random, words: list[str]) -> str:
    n = rng.randint(4, 24)
    # Zipf-ish choice so frequent words repeat like in text; long words split into ##pieces
    picked = [words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)] if rng.random() < 0.5
              else rng.choice(words) for _ in range(n)]
    if rng.random() < 0.2:
        picked.append(rng.choice(words) + rng.choice(words))  # an unknown compound: several wordpieces
    text = " ".join(picked)
    return text[0].upper() + text[1:] + rng.choice(".....?!")


def _paragraphs(rng: random.Random, words: list[str], sentences: int) -> list[str]:
    out, left = [], sentences
    while left > 0:
        k = min(left, rng.randint(1, 6))
        out.append(" ".join(_sentence(rng, words) for _ in range(k)))
        left -= k
    return out


def wiki_text(rng: random.Random, words: list[str], n_docs: int, first_id: int = 0) -> str:
    blocks = []
    for d in range(n_docs):
        title = " ".join(rng.choice(words) for _ in range(2)).title()
        body = "\n".join(_paragraphs(rng, words, rng.randint(2, 30)))
        blocks.append(f'<doc id="{first_id + d}" url="https://en.wikipedia.org/wiki?curid={first_id + d}" '
                      f'title="{title}">\n{title}\n\n{body}\n</doc>\n')
    return "".join(blocks)


def book_text(rng: random.Random, words: list[str], sentences: int) -> str:
    return "\n\n".join(_paragraphs(rng, words, sentences)) + "\n"


def write_corpus(directory: str, words: list[str], *, wiki_files: int = 2, docs_per_wiki_file: int = 50,
                 books: int = 2, sentences_per_book: int = 300, seed: int = 0) -> list[str]:
    """Write ``wiki_NN`` files (extractor format) and ``book_NN.txt`` files; returns paths."""
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(wiki_files):
        path = os.path.join(directory, f"wiki_{i:02d}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(wiki_text(rng, words, docs_per_wiki_file, first_id=i * docs_per_wiki_file))
        paths.append(path)
    for i in range(books):
        path = os.path.join(directory, f"book_{i:02d}.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(book_text(rng, words, sentences_per_book))
        paths.append(path)
    return paths
