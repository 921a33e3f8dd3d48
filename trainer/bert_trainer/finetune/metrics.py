"""SQuAD and GLUE metrics, defined the way the official evaluation scripts define them.

SQuAD v1.1 and v2.0 (evaluate-v1.1.py / evaluate-v2.0.py): answers are
normalised (lower case, punctuation removed, the articles a/an/the removed,
whitespace collapsed); exact match and token-F1 take the maximum over the
gold answers; v2.0 scores an unanswerable question against the empty answer,
applies a no-answer probability threshold, splits HasAns/NoAns and reports the
best thresholds. GLUE: Matthews correlation (CoLA), accuracy and F1 (MRPC),
accuracy (MNLI matched and mismatched). Pure Python, no TensorFlow: the
operator's tests and the trainer share them.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


class MetricsInputError(ValueError):
    """Evaluation data that does not have the official shape; the message names the record."""


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1; when either side is empty (no answer), 1 if both are, else 0."""
    pred, truth = answer_tokens(prediction), answer_tokens(gold)
    if not pred or not truth:
        return float(pred == truth)
    common = sum((Counter(pred) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def _questions(dataset: Mapping[str, Any]) -> Iterable[tuple[str, list[str]]]:
    """(question id, gold answer texts) of every question in a SQuAD JSON document."""
    data = dataset.get("data") if isinstance(dataset, Mapping) else None
    if not isinstance(data, list):
        raise MetricsInputError("dataset: expected a SQuAD JSON object with a 'data' list")
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article.get("paragraphs") or []):
            for q, qa in enumerate(paragraph.get("qas") or []):
                if "id" not in qa or not isinstance(qa.get("answers"), list):
                    raise MetricsInputError(f"data[{a}].paragraphs[{p}].qas[{q}]: needs 'id' and an 'answers' list")
                yield str(qa["id"]), [str(ans.get("text", "")) for ans in qa["answers"]]


def squad_v1(dataset: Mapping[str, Any], predictions: Mapping[str, str]) -> dict[str, float]:
    """{'exact_match', 'f1'} in percent; an unanswered question scores 0."""
    exact = f1 = 0.0
    total = 0
    for qid, golds in _questions(dataset):
        total += 1
        if qid not in predictions:
            continue
        if not golds:
            raise MetricsInputError(f"question {qid}: SQuAD v1.1 needs at least one gold answer")
        exact += max(exact_match(predictions[qid], gold) for gold in golds)
        f1 += max(f1_score(predictions[qid], gold) for gold in golds)
    if total == 0:
        raise MetricsInputError("dataset: no questions")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def _best_threshold(
    predictions: Mapping[str, str], scores: Mapping[str, float], na_probs: Mapping[str, float], has_answer: Mapping[str, bool]
) -> tuple[float, float]:
    """Score and threshold maximising the total when every question above the threshold is answered 'no answer'."""
    current = best = float(sum(1 for has in has_answer.values() if not has))
    threshold = 0.0
    for qid in sorted(scores, key=lambda q: na_probs[q]):
        if has_answer[qid]:
            current += scores[qid]
        elif predictions.get(qid):
            current -= 1
        if current > best:
            best, threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), threshold


def squad_v2(
    dataset: Mapping[str, Any],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_threshold: float = 1.0,
) -> dict[str, float]:
    """The evaluate-v2.0 figures: exact, f1, HasAns_/NoAns_ splits and best thresholds."""
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, texts in _questions(dataset):
        golds = [t for t in texts if normalize_answer(t)] or [""]
        has_answer[qid] = golds != [""]
        if qid not in predictions:
            continue
        exact_raw[qid] = max(exact_match(predictions[qid], gold) for gold in golds)
        f1_raw[qid] = max(f1_score(predictions[qid], gold) for gold in golds)
    if not has_answer:
        raise MetricsInputError("dataset: no questions")
    probs = {qid: float((na_probs or {}).get(qid, 0.0)) for qid in has_answer}

    def thresholded(raw: Mapping[str, float]) -> dict[str, float]:
        return {qid: (float(not has_answer[qid]) if probs[qid] > na_prob_threshold else score) for qid, score in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    if not exact:
        raise MetricsInputError("predictions: none of the dataset's question ids has a prediction")
    # As the official script: questions without a prediction are left out of every total.
    out: dict[str, float] = {
        "exact": 100.0 * sum(exact.values()) / len(exact),
        "f1": 100.0 * sum(f1.values()) / len(exact),
        "total": float(len(exact)),
    }
    for label, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid in exact if has_answer[qid] is wanted]
        if ids:
            out[f"{label}_exact"] = 100.0 * sum(exact[q] for q in ids) / len(ids)
            out[f"{label}_f1"] = 100.0 * sum(f1[q] for q in ids) / len(ids)
            out[f"{label}_total"] = float(len(ids))
    out["best_exact"], out["best_exact_thresh"] = _best_threshold(predictions, exact_raw, probs, has_answer)
    out["best_f1"], out["best_f1_thresh"] = _best_threshold(predictions, f1_raw, probs, has_answer)
    return out


# ----------------------------------------------------------------------------- GLUE


def _pairs(labels: Sequence[int], predictions: Sequence[int]) -> list[tuple[int, int]]:
    if len(labels) != len(predictions):
        raise MetricsInputError(f"labels and predictions differ in length: {len(labels)} vs {len(predictions)}")
    if not labels:
        raise MetricsInputError("no examples to score")
    return list(zip(labels, predictions))


def accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    pairs = _pairs(labels, predictions)
    return sum(1 for y, p in pairs if y == p) / len(pairs)


def binary_f1(labels: Sequence[int], predictions: Sequence[int], positive: int = 1) -> float:
    pairs = _pairs(labels, predictions)
    tp = sum(1 for y, p in pairs if y == positive and p == positive)
    fp = sum(1 for y, p in pairs if y != positive and p == positive)
    fn = sum(1 for y, p in pairs if y == positive and p != positive)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Binary Matthews correlation; 0 when a row or column of the confusion matrix is empty."""
    pairs = _pairs(labels, predictions)
    tp = sum(1 for y, p in pairs if y == 1 and p == 1)
    tn = sum(1 for y, p in pairs if y == 0 and p == 0)
    fp = sum(1 for y, p in pairs if y == 0 and p == 1)
    fn = sum(1 for y, p in pairs if y == 1 and p == 0)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def glue_metrics(task: str, labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """The metrics GLUE reports for a task's dev set (MNLI: call once per matched / mismatched set)."""
    if task == "CoLA":
        return {"mcc": matthews_corrcoef(labels, predictions)}
    if task == "MRPC":
        return {"accuracy": accuracy(labels, predictions), "f1": binary_f1(labels, predictions)}
    if task == "MNLI":
        return {"accuracy": accuracy(labels, predictions)}
    raise MetricsInputError(f"task: must be one of 'CoLA', 'MRPC' or 'MNLI', got {task!r}")
