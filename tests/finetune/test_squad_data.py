"""SQuAD reading, doc_stride windows and span mapping, with the real uncased vocab."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from bert_trainer.finetune.metrics import squad_v1, squad_v2
from bert_trainer.finetune.squad_data import SquadDataError, make_features, postprocess, read_squad

pytest.importorskip("tokenizers")

NAMES = ["Château Lafite", "Ada Lovelace", "São Paulo", "the Rhône valley", "Marie Curie", "Grace Hopper"]
FILLER = ["The committee met again in the spring.", "Nobody expected the weather to change so quickly.",
          "Several reports were filed, reviewed and archived.", "It was, by all accounts, an unremarkable year."]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path):
    from bert_trainer.finetune.tokenization import load_tokenizer

    return load_tokenizer(str(minilm_dir / "vocab.txt"), lower_case=True, scratch_dir="/tmp")


def long_squad(path: Path, count: int, seed: int, impossible_every: int = 0, names: list[str] = NAMES) -> dict:
    """Contexts of 12-20 sentences with the answer (a name, accents included) somewhere in the middle."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(count):
        name = rng.choice(names)
        sentences = [rng.choice(FILLER) for _ in range(rng.randint(12, 20))]
        at = rng.randint(3, len(sentences) - 3)
        sentences.insert(at, f"The prize went to {name}, as announced.")
        context = " ".join(sentences)
        impossible = bool(impossible_every) and i % impossible_every == 0
        qa = {"id": f"q{i}", "question": "Who received the prize?", "is_impossible": impossible,
              "answers": [] if impossible else [{"text": name, "answer_start": context.index(name)}]}
        paragraphs.append({"context": context, "qas": [qa]})
    document = {"version": "x", "data": [{"title": "t", "paragraphs": paragraphs}]}
    path.write_text(json.dumps(document, ensure_ascii=False))
    return document


def test_windows_cover_long_contexts_and_gold_spans_map_back_to_the_exact_text(tokenizer, tmp_path: Path) -> None:
    document = long_squad(tmp_path / "train.json", 30, seed=1)
    examples = read_squad(str(tmp_path / "train.json"), version_2=False)
    features = make_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_query_length=16, training=True)
    assert len(features) > 3 * len(examples)  # contexts really were cut into overlapping windows
    for index, example in enumerate(examples):
        mine = [f for f in features if f.example_index == index]
        located = [f for f in mine if f.start_position > 0]
        assert located, example.qid
        for f in located:
            start, end = f.token_offsets[f.start_position][0], f.token_offsets[f.end_position][1]
            assert example.context[start:end] == example.answers[0][0]  # accents and case as written
    assert all(len(f.input_ids) == 64 and f.input_ids.count(102) == 2 for f in features)  # [SEP] twice

    # Logits peaking at the gold tokens of every window: post-processing recovers every answer exactly.
    starts = np.full((len(features), 64), -10.0)
    ends = np.full((len(features), 64), -10.0)
    for i, f in enumerate(features):
        if f.start_position:
            starts[i, f.start_position] = ends[i, f.end_position] = 10.0
    predictions, _ = postprocess(examples, features, starts, ends)
    assert predictions == {e.qid: e.answers[0][0] for e in examples}
    assert squad_v1(document, predictions) == {"exact_match": 100.0, "f1": 100.0}


def test_v2_null_answers_and_null_odds(tokenizer, tmp_path: Path) -> None:
    document = long_squad(tmp_path / "dev.json", 8, seed=2, impossible_every=2)
    examples = read_squad(str(tmp_path / "dev.json"), version_2=True)
    features = make_features(examples, tokenizer, max_seq_length=96, doc_stride=32, max_query_length=16, training=True)
    starts = np.full((len(features), 96), -5.0)
    ends = np.full((len(features), 96), -5.0)
    for i, f in enumerate(features):
        if examples[f.example_index].is_impossible:
            starts[i, 0] = ends[i, 0] = 5.0  # [CLS]: no answer
        elif f.start_position:
            starts[i, f.start_position] = ends[i, f.end_position] = 10.0
    predictions, null_odds = postprocess(examples, features, starts, ends, version_2=True)
    assert all(predictions[e.qid] == "" for e in examples if e.is_impossible)
    assert all(null_odds[e.qid] > 0 for e in examples if e.is_impossible)
    scores = squad_v2(document, predictions, na_probs={k: 1 / (1 + np.exp(-v)) for k, v in null_odds.items()})
    assert scores["exact"] == 100.0 and scores["NoAns_total"] == 4 and scores["HasAns_total"] == 4


@pytest.mark.parametrize(("content", "message"), [
    ('{"data": [{"paragraphs": [{"context": "Paris is big.", "qas": [{"id": "a", "question": "?", '
     '"answers": [{"text": "Rome", "answer_start": 0}]}]}]}]}', "(a): answer 'Rome' is not in the context at answer_start 0"),
    ('{"data": [', "not a JSON document"),
    ('{"data": []}', "no questions (an empty split)"),
    ('{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "b", "question": "?", "answers": []}]}]}]}',
     "(b): an answerable question needs at least one answer"),
])
def test_bad_squad_files_name_the_file_and_record(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SquadDataError) as caught:
        read_squad(str(path), version_2=False)
    assert str(path) in str(caught.value) and message in str(caught.value)
