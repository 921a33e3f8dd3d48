"""SQuAD and GLUE metrics on worked examples computed by hand."""

from __future__ import annotations

import math

import pytest

from bert_trainer.finetune.metrics import (
    MetricsInputError, accuracy, binary_f1, exact_match, f1_score, glue_metrics, matthews_corrcoef,
    normalize_answer, squad_v1, squad_v2,
)


def dataset(*questions: tuple[str, list[str]]) -> dict:
    qas = [{"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in answers]}
           for qid, answers in questions]
    return {"version": "x", "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]}


def test_normalisation_drops_case_punctuation_articles_and_spaces() -> None:
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_token_f1_and_exact_match() -> None:
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P=1, R=2/3
    assert f1_score("", "") == 1.0 and f1_score("x", "") == 0.0
    assert exact_match("Denver Broncos.", "the denver broncos") == 1


def test_squad_v1_maximum_over_golds_and_unanswered_scores_zero() -> None:
    data = dataset(("q1", ["Denver Broncos", "The Denver Broncos"]), ("q2", ["in 1990"]), ("q3", ["Paris"]))
    scores = squad_v1(data, {"q1": "denver broncos", "q2": "1990 season"})
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * 1.5 / 3)  # 1 + 0.5 + 0 (q3 unanswered)


def test_squad_v2_no_answer_scoring_threshold_and_splits() -> None:
    data = dataset(("q1", ["Paris"]), ("q2", []), ("q3", []))
    predictions = {"q1": "Paris", "q2": "", "q3": "London"}
    na_probs = {"q1": 0.1, "q2": 0.9, "q3": 0.8}
    plain = squad_v2(data, predictions, na_probs)
    assert plain["exact"] == pytest.approx(200 / 3) and plain["total"] == 3
    assert plain["HasAns_exact"] == 100 and plain["NoAns_exact"] == 50 and plain["NoAns_total"] == 2
    thresholded = squad_v2(data, predictions, na_probs, na_prob_threshold=0.5)
    assert thresholded["exact"] == 100  # q2 and q3 above 0.5 count as "no answer": both right
    # Sorted by no-answer probability q1, q3, q2: answering only q1 gives 3 of 3.
    assert plain["best_exact"] == 100 and plain["best_exact_thresh"] == 0.1


def test_squad_v2_leaves_unpredicted_questions_out_like_the_official_script() -> None:
    data = dataset(("q1", ["Paris"]), ("q2", ["Rome"]))
    assert squad_v2(data, {"q1": "Paris"})["total"] == 1


def test_glue_metrics() -> None:
    assert matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(2 / math.sqrt(12))
    assert matthews_corrcoef([1, 1], [1, 1]) == 0.0  # empty confusion row: defined as 0
    assert accuracy([1, 1, 0, 1], [1, 0, 1, 1]) == 0.5
    assert binary_f1([1, 1, 0, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    assert glue_metrics("MRPC", [1, 0], [1, 0]) == {"accuracy": 1.0, "f1": 1.0}
    assert glue_metrics("CoLA", [1, 0], [1, 0]) == {"mcc": 1.0}


@pytest.mark.parametrize(("call", "message"), [
    (lambda: squad_v1({"nope": []}, {}), "dataset: expected a SQuAD JSON object"),
    (lambda: squad_v1({"data": [{"paragraphs": [{"qas": [{"question": "?"}]}]}]}, {}), r"data\[0\].paragraphs\[0\].qas\[0\]"),
    (lambda: accuracy([1, 0], [1]), "differ in length: 2 vs 1"),
    (lambda: glue_metrics("SST-2", [1], [1]), "task: must be one of"),
    (lambda: squad_v2(dataset(("q1", ["x"])), {"other": "x"}), "none of the dataset's question ids"),
])
def test_malformed_input_names_the_record(call, message: str) -> None:
    with pytest.raises(MetricsInputError, match=message):
        call()
