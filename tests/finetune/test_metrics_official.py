"""The metrics on the real benchmark files (../shared/data): this project's SQuAD v1.1 scoring gives the official
evaluate-v1.1.py scores of two published prediction files, and the GLUE readers and metrics give the dev sets'
known majority-class figures. Skipped, with the reason, only where the data folder is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bert_trainer.finetune.glue_data import read_examples
from bert_trainer.finetune.metrics import glue_metrics, squad_v1
from tests.conftest import REPO

DATA = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.needs_shared("data/squad/dev-v1.1.json", "data/squad/sample_predictions", "data/mrpc", "data/cola")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("predictions", "exact_match", "f1"), [
    ("v1.1-BERT-ensemble-Google.json", 86.2062, 92.1956),
    ("v1.1-LogisticRegression-baseline-Stanford.json", 40.1419, 50.9815),  # leaves some questions unanswered
])
def test_squad_v1_scores_published_predictions_as_the_official_script_does(predictions: str, exact_match: float,
                                                                            f1: float) -> None:
    dataset = load(DATA / "squad" / "dev-v1.1.json")
    scores = squad_v1(dataset, load(DATA / "squad" / "sample_predictions" / predictions))
    assert round(scores["exact_match"], 4) == exact_match and round(scores["f1"], 4) == f1
    assert sum(len(p["qas"]) for a in dataset["data"] for p in a["paragraphs"]) == 10570


def test_mrpc_dev_reads_408_pairs_and_the_majority_class_scores_as_glue_reports() -> None:
    dev = read_examples("MRPC", str(DATA / "mrpc"), "dev")
    assert len(dev) == 408 and dev[0].text_b  # the BOM of the header line is no first column
    labels = [example.label for example in dev]
    majority = glue_metrics("MRPC", labels, [1] * len(labels))
    assert round(majority["accuracy"], 3) == 0.684 and round(majority["f1"], 3) == 0.812


def test_cola_dev_reads_1043_sentences_and_a_constant_prediction_has_no_correlation() -> None:
    dev = read_examples("CoLA", str(DATA / "cola"), "dev")
    assert len(dev) == 1043 and dev[0].text_b is None
    labels = [example.label for example in dev]
    assert glue_metrics("CoLA", labels, [1] * len(labels)) == {"mcc": 0.0}
    assert glue_metrics("CoLA", labels, labels)["mcc"] == pytest.approx(1.0)
