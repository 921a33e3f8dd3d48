"""SQuAD v1.1/v2.0: reading the official JSON, windowed features, and spans back to text.

Contexts longer than fits beside the question are cut into windows `doc_stride`
tokens apart (Google's run_squad scheme). Every context token keeps its
character offsets (from the `tokenizers` encoding), so a predicted token span
maps back to the exact characters of the original context, not to a
re-joined WordPiece string. Where windows overlap, a token is scored only in
the window where it has the most context on both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from bert_trainer import storage
from bert_trainer.finetune.metrics import squad_v1, squad_v2


class SquadDataError(ValueError):
    """A SQuAD file that does not have the official shape; the message names file and record."""


@dataclass(frozen=True)
class SquadExample:
    qid: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character start)
    is_impossible: bool


@dataclass
class Feature:
    example_index: int
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    token_offsets: dict[int, tuple[int, int]]  # feature position -> (char start, char end) in the context
    max_context: dict[int, bool]
    start_position: int = 0
    end_position: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def read_squad(uri: str, version_2: bool, *, require_answers: bool = True) -> list[SquadExample]:
    """Examples of a SQuAD JSON file (local or s3://); answers must lie where answer_start says. Without
    `require_answers` (prediction only), an answerable question may come without its answers."""
    try:
        document = json.loads(storage.read_bytes(uri).decode("utf-8"))
    except storage.StorageError as exc:
        raise SquadDataError(f"{uri}: cannot read ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SquadDataError(f"{uri}: not a JSON document ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise SquadDataError(f"{uri}: expected an object with a 'data' list")
    examples = []
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(article.get("paragraphs") or []):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise SquadDataError(f"{uri}: data[{a}].paragraphs[{p}]: 'context' must be a string")
            for q, qa in enumerate(paragraph.get("qas") or []):
                where = f"{uri}: data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
                    raise SquadDataError(f"{where}: needs string 'id' and 'question'")
                impossible = bool(qa.get("is_impossible", False)) if version_2 else False
                answers = []
                for answer in qa.get("answers") or []:
                    text, start = answer.get("text"), answer.get("answer_start")
                    if not isinstance(text, str) or not isinstance(start, int):
                        raise SquadDataError(f"{where} ({qa['id']}): answers need 'text' and integer 'answer_start'")
                    if context[start:start + len(text)] != text:
                        raise SquadDataError(
                            f"{where} ({qa['id']}): answer {text!r} is not in the context at answer_start {start}")
                    answers.append((text, start))
                if require_answers and not impossible and not answers:
                    raise SquadDataError(f"{where} ({qa['id']}): an answerable question needs at least one answer")
                examples.append(SquadExample(qa["id"], qa["question"], context, tuple(answers), impossible))
    if not examples:
        raise SquadDataError(f"{uri}: no questions (an empty split)")
    return examples


def _windows(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while True:
        span = min(length - start, size)
        spans.append((start, span))
        if start + span >= length:
            return spans
        start += min(span, stride)


def _max_context(spans: Sequence[tuple[int, int]], index: int, position: int) -> bool:
    """Whether window `index` gives token `position` its best context (Google's rule: min of both sides + 0.01 x length)."""
    best, best_index = None, None
    for i, (start, length) in enumerate(spans):
        if not start <= position < start + length:
            continue
        score = min(position - start, start + length - 1 - position) + 0.01 * length
        if best is None or score > best:
            best, best_index = score, i
    return best_index == index


def make_features(examples: Sequence[SquadExample], tokenizer, max_seq_length: int, doc_stride: int,
                  max_query_length: int, training: bool) -> list[Feature]:
    cls, sep, pad = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    features = []
    for index, example in enumerate(examples):
        query = tokenizer.encode(example.question, add_special_tokens=False).ids[:max_query_length]
        context = tokenizer.encode(example.context, add_special_tokens=False)
        doc_ids, doc_offsets = context.ids, context.offsets
        room = max_seq_length - len(query) - 3
        spans = _windows(len(doc_ids), room, doc_stride)
        answer_tokens = None
        if training and not example.is_impossible:
            text, char_start = example.answers[0]
            char_end = char_start + len(text)
            inside = [i for i, (s, e) in enumerate(doc_offsets) if s < char_end and e > char_start]
            if inside:
                answer_tokens = (inside[0], inside[-1])
        for w, (start, length) in enumerate(spans):
            ids = [cls, *query, sep, *doc_ids[start:start + length], sep]
            segments = [0] * (len(query) + 2) + [1] * (length + 1)
            offset = len(query) + 2
            feature = Feature(
                example_index=index,
                input_ids=ids + [pad] * (max_seq_length - len(ids)),
                input_mask=[1] * len(ids) + [0] * (max_seq_length - len(ids)),
                segment_ids=segments + [0] * (max_seq_length - len(segments)),
                token_offsets={offset + i: doc_offsets[start + i] for i in range(length)},
                max_context={offset + i: _max_context(spans, w, start + i) for i in range(length)},
            )
            if answer_tokens and start <= answer_tokens[0] and answer_tokens[1] < start + length:
                feature.start_position = offset + answer_tokens[0] - start
                feature.end_position = offset + answer_tokens[1] - start
            features.append(feature)
    return features


def feature_arrays(features: Sequence[Feature]) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.array([f.input_ids for f in features], dtype=np.int32),
        "input_mask": np.array([f.input_mask for f in features], dtype=np.int32),
        "segment_ids": np.array([f.segment_ids for f in features], dtype=np.int32),
        "start_positions": np.array([f.start_position for f in features], dtype=np.int32),
        "end_positions": np.array([f.end_position for f in features], dtype=np.int32),
    }


def postprocess(examples: Sequence[SquadExample], features: Sequence[Feature], start_logits: np.ndarray,
                end_logits: np.ndarray, *, n_best: int = 20, max_answer_length: int = 30,
                version_2: bool = False, null_score_diff_threshold: float = 0.0) -> tuple[dict[str, str], dict[str, float]]:
    """predictions.json (qid -> answer text, '' for no answer) and, for v2.0, null odds (qid -> null minus best span)."""
    by_example: dict[int, list[int]] = {}
    for f, feature in enumerate(features):
        by_example.setdefault(feature.example_index, []).append(f)
    predictions, null_odds = {}, {}
    for index, example in enumerate(examples):
        (char_start, char_end), best_score, null_score = best_span(
            features, by_example.get(index, []), start_logits, end_logits, n_best=n_best,
            max_answer_length=max_answer_length)
        best_text = example.context[char_start:char_end]
        if version_2:
            null_odds[example.qid] = null_score - best_score if np.isfinite(best_score) else float("inf")
            predictions[example.qid] = "" if null_odds[example.qid] > null_score_diff_threshold else best_text
        else:
            predictions[example.qid] = best_text
    return predictions, null_odds


def best_span(features: Sequence[Feature], indices: Sequence[int], start_logits: np.ndarray, end_logits: np.ndarray, *,
              n_best: int, max_answer_length: int) -> tuple[tuple[int, int], float, float]:
    """The best-scoring answer over one question's windows (`indices` into features): its (start, end) characters in
    the context ((0, 0) when none qualifies), its score, and the windows' lowest null score ([CLS] start + end).
    A span starts in a window that gives its first token the most context and is at most max_answer_length long.
    Shared by predictions.json and the served answers, so both pick the same span."""
    best, best_score, null_score = (0, 0), -np.inf, np.inf
    for f in indices:
        feature, starts, ends = features[f], start_logits[f], end_logits[f]
        null_score = min(null_score, float(starts[0] + ends[0]))
        top_starts = np.argsort(starts)[::-1][:n_best]
        top_ends = np.argsort(ends)[::-1][:n_best]
        for s in top_starts:
            if s not in feature.token_offsets or not feature.max_context.get(int(s), False):
                continue
            for e in top_ends:
                if e not in feature.token_offsets or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if score > best_score:
                    best_score = score
                    best = (feature.token_offsets[int(s)][0], feature.token_offsets[int(e)][1])
    return best, best_score, null_score


def score(examples: Sequence[SquadExample], predictions: dict[str, str], null_odds: dict[str, float],
          version_2: bool) -> dict[str, float]:
    """The official metrics of `predictions` against the examples' answers (v2.0: the null odds, squashed to
    (0, 1), as the no-answer probabilities evaluate-v2.0.py takes)."""
    dataset = {"data": [{"paragraphs": [{"context": e.context, "qas": [
        {"id": e.qid, "question": e.question, "answers": [{"text": t, "answer_start": s} for t, s in e.answers]}]}]}
        for e in examples]}
    if version_2:
        probabilities = {qid: float(1 / (1 + np.exp(-min(max(v, -50.0), 50.0)))) for qid, v in null_odds.items()}
        return squad_v2(dataset, predictions, probabilities)
    return squad_v1(dataset, predictions)
