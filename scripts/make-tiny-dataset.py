#!/usr/bin/env python3
"""Generate examples/tiny: the corpus, WordPiece vocab and CoLA-layout task of the tiny example.

Why generated: the embedded default must run with nothing downloaded, and text
written for this project keeps the repository free of third-party corpora.
The text is not word salad: each document describes one invented place with
facts drawn from a small world (regions, rivers, trades, animals, years), so
sentences in a document share a topic (next-sentence prediction has a signal)
and masked words are predictable from context (the masked-LM loss can fall).
The CoLA-layout sentences are this world's sentences, half of them scrambled,
so a model that learnt the corpus's word order has something to transfer.

Deterministic: the same seed writes the same bytes (a test regenerates and compares).
Run: .venv/bin/python scripts/make-tiny-dataset.py [OUT_DIR]   (default examples/tiny)
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

SEED = 20261126
VOCAB_SIZE = 512
DOCS = 480
SENTENCES_TRAIN, SENTENCES_DEV = 2000, 400
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

SYLLABLES = "ka lo mir tan vel dor su ren ba thal quin ost mar el ria fen gor lin pa sto ver dun ash cor".split()
REGIONS = ["the northern hills", "the western coast", "the river valley", "the high plateau", "the eastern marshes",
           "the southern plains", "the forest country", "the lake district"]
RIVERS = ["Amberflow", "Silverrun", "Greywater", "Redbrook", "Longmere", "Coldspring", "Stonebend", "Willowrun"]
TRADES = ["weaving", "fishing", "salt making", "pottery", "shipbuilding", "cheese making", "glass blowing",
          "copper mining", "paper making", "horse breeding", "wine growing", "bell casting"]
ANIMALS = ["heron", "otter", "lynx", "falcon", "badger", "salmon", "stork", "beaver", "elk", "kestrel"]
SEASONS = ["spring", "summer", "autumn", "winter"]
FESTIVALS = ["a lantern festival", "a boat race", "a harvest fair", "a music contest", "a horse market"]
BUILDINGS = ["a stone bridge", "a round tower", "a covered market", "an old mill", "a library", "a lighthouse"]
FOUNDERS = ["traders", "fishermen", "monks", "miners", "farmers", "soldiers"]


def place_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def facts(rng: random.Random, name: str) -> dict[str, str]:
    return {
        "name": name, "region": rng.choice(REGIONS), "river": rng.choice(RIVERS), "trade": rng.choice(TRADES),
        "animal": rng.choice(ANIMALS), "season": rng.choice(SEASONS), "festival": rng.choice(FESTIVALS),
        "building": rng.choice(BUILDINGS), "founders": rng.choice(FOUNDERS), "year": str(rng.randint(1100, 1890)),
        "people": str(rng.randint(2, 90) * 100), "neighbour": place_name(rng),
    }


# Sentences about one place; {x} are its facts. Several wordings per fact.
STATEMENTS: dict[str, list[str]] = {
    "region": ["{name} is a town in {region}.", "{name} lies in {region}.", "The town of {name} is found in {region}."],
    "river": ["It stands on the banks of the {river}.", "The {river} flows through {name}.",
              "{name} was built where the {river} bends."],
    "year": ["It was founded by {founders} in {year}.", "{founders} founded the town in {year}.",
             "The first houses were built by {founders} in {year}."],
    "trade": ["The town is known for {trade}.", "Most people in {name} live from {trade}.",
              "For centuries {trade} has been the main trade of {name}."],
    "people": ["About {people} people live there today.", "{name} has a population of about {people}.",
               "Today the town is home to some {people} people."],
    "animal": ["The {animal} is the symbol of the town.", "A {animal} appears on the town's coat of arms.",
               "People in {name} say the {animal} brings good luck."],
    "festival": ["Every {season} the town holds {festival}.", "In {season} {name} celebrates with {festival}.",
                 "{festival} takes place in {name} each {season}."],
    "building": ["Its best known building is {building}.", "Visitors come to see {building} in the old town.",
                 "{building} stands at the centre of {name}."],
    "neighbour": ["The nearest town is {neighbour}.", "A road leads from {name} to {neighbour}.",
                  "{neighbour} is a short walk from {name}."],
}


def sentence(template: str, fact: dict[str, str]) -> str:
    text = template.format(**fact)
    return text[0].upper() + text[1:]


def document(rng: random.Random, fact: dict[str, str]) -> list[str]:
    keys = list(STATEMENTS)
    rng.shuffle(keys)
    keys.remove("region")
    chosen = ["region", *keys[: rng.randint(5, len(keys))]]  # the opening line, then facts in any order
    return [sentence(rng.choice(STATEMENTS[key]), fact) for key in chosen]


def wiki_file(docs: list[tuple[dict[str, str], list[str]]], first_id: int) -> str:
    """Wikipedia extractor layout, as prepare-data reads it: a title line, then paragraphs."""
    out = []
    for offset, (fact, lines) in enumerate(docs):
        doc_id = first_id + offset
        body = "\n".join(" ".join(lines[i:i + 3]) for i in range(0, len(lines), 3))
        out.append(f'<doc id="{doc_id}" url="https://example.org/wiki?curid={doc_id}" title="{fact["name"]}">\n'
                   f'{fact["name"]}\n\n{body}\n</doc>\n')
    return "".join(out)


def cola_rows(rng: random.Random, places: list[dict[str, str]], count: int, source: str) -> list[str]:
    """CoLA rows (source, label, original label, sentence): 1 for a sentence of this world, 0 for a scrambled one.

    Three in four bad sentences are shuffled throughout, one in four has two neighbouring words
    swapped: only word order tells, which a model that learnt the corpus's word order can judge.
    """
    rows = []
    for i in range(count):
        fact = rng.choice(places)
        text = sentence(rng.choice(STATEMENTS[rng.choice(list(STATEMENTS))]), fact)
        good = i % 2 == 0
        if not good:
            words = text.rstrip(".").split(" ")
            while " ".join(words) == text.rstrip("."):
                if i % 8 != 7:
                    rng.shuffle(words)
                else:
                    k = rng.randrange(len(words) - 1)
                    words[k], words[k + 1] = words[k + 1], words[k]
            text = " ".join(words) + "."
            text = text[0].upper() + text[1:]
        rows.append(f"{source}\t{int(good)}\t{'' if good else '*'}\t{text}")
    return rows


def build_vocab(texts: list[str]) -> list[str]:
    """A WordPiece vocab for this world, padded with [unusedN] to VOCAB_SIZE as BERT's is.

    Built by rule, not learnt, so it is byte-for-byte reproducible (tokenizers'
    trainer breaks frequency ties differently from run to run): the special
    tokens, every character with its ##continuation, the name syllables with
    theirs (so invented names split into syllables), then every whole word of
    the corpus, most frequent first. Numbers split into digits.
    """
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"[a-z]+", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    chars = sorted({ch for text in texts for ch in text.lower() if not ch.isspace()})
    tokens = [*SPECIALS, *chars, *(f"##{ch}" for ch in chars if ch.isalnum())]
    tokens += [*SYLLABLES, *(f"##{syl}" for syl in SYLLABLES)]
    syllables = set(SYLLABLES)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if word not in tokens and not _is_name(word, syllables):
            tokens.append(word)
    if len(tokens) > VOCAB_SIZE:
        raise SystemExit(f"vocab needs {len(tokens)} tokens, more than VOCAB_SIZE={VOCAB_SIZE}")
    return tokens + [f"[unused{i}]" for i in range(VOCAB_SIZE - len(tokens))]


def _is_name(word: str, syllables: set[str]) -> bool:
    """Whether `word` is an invented place name (syllables only): those stay split into syllables."""
    if not word:
        return True
    return any(word.startswith(syl) and _is_name(word[len(syl):], syllables) for syl in syllables)


def main(out_dir: str = "examples/tiny") -> int:
    rng = random.Random(SEED)
    out = Path(out_dir)
    names: list[str] = []
    while len(names) < DOCS:
        name = place_name(rng)
        if name not in names:
            names.append(name)
    places = [facts(rng, name) for name in names]
    docs = [(fact, document(rng, fact)) for fact in places]

    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    per_file = DOCS // 4
    for index in range(4):
        chunk = docs[index * per_file:(index + 1) * per_file]
        (corpus / f"wiki_{index:02d}").write_text(wiki_file(chunk, index * per_file), encoding="utf-8")

    cola = out / "CoLA"
    cola.mkdir(parents=True, exist_ok=True)
    train_places, dev_places = places[: DOCS * 3 // 4], places[DOCS * 3 // 4:]  # dev names are unseen in training
    (cola / "train.tsv").write_text("\n".join(cola_rows(rng, train_places, SENTENCES_TRAIN, "tiny")) + "\n", encoding="utf-8")
    (cola / "dev.tsv").write_text("\n".join(cola_rows(rng, dev_places, SENTENCES_DEV, "tiny")) + "\n", encoding="utf-8")

    texts = [" ".join(lines) for _, lines in docs]
    (out / "vocab.txt").write_text("\n".join(build_vocab(texts)) + "\n", encoding="utf-8")
    print(f"wrote {out}: {DOCS} documents, {SENTENCES_TRAIN}+{SENTENCES_DEV} CoLA sentences, vocab of {VOCAB_SIZE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
