"""What a set of pretraining records holds, as distributions: the yardstick for "statistically the same
output" when the instance code changes or is compared with Google's create_pretraining_data.py
(bench/data_prep_throughput.py, tests/data/test_reference_summary.py).

The summary reads only the records (any writer's), so the masking split is read
off them too: a predicted position that holds [MASK] was masked, one that holds
its original id was kept, any other was replaced by a random id (a random id
that happens to be the original counts as kept, as it would in the recipe's own
bookkeeping: about 1 in 30,000)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

#: Buckets of real tokens per instance ([CLS] A [SEP] B [SEP]), as fractions of max_seq_length.
LENGTH_BUCKETS = 10


def summarise(records: Iterable[bytes], mask_id: int, max_seq_length: int, limit: int | None = None) -> dict:
    """Distributions over (at most ``limit``) serialised tf.train.Examples of the standard schema."""
    from tensorflow.core.example import example_pb2  # noqa: PLC0415 - only tools and tests summarise

    n = 0
    lengths = [0] * LENGTH_BUCKETS
    predictions: dict[int, int] = {}
    masked = kept = replaced = label_1 = real_tokens = 0
    for raw in records:
        if limit is not None and n >= limit:
            break
        f = example_pb2.Example.FromString(raw).features.feature
        ids = f["input_ids"].int64_list.value
        real = sum(f["input_mask"].int64_list.value)
        k = int(sum(f["masked_lm_weights"].float_list.value))
        positions = f["masked_lm_positions"].int64_list.value[:k]
        original = f["masked_lm_ids"].int64_list.value[:k]
        for pos, orig in zip(positions, original):
            if ids[pos] == mask_id:
                masked += 1
            elif ids[pos] == orig:
                kept += 1
            else:
                replaced += 1
        lengths[min(LENGTH_BUCKETS - 1, (real - 1) * LENGTH_BUCKETS // max_seq_length)] += 1
        predictions[k] = predictions.get(k, 0) + 1
        label_1 += f["next_sentence_labels"].int64_list.value[0]
        real_tokens += real
        n += 1
    total_predicted = max(masked + kept + replaced, 1)
    return {
        "instances": n,
        "meanRealTokens": round(real_tokens / max(n, 1), 3),
        "meanPredictions": round(sum(k * c for k, c in predictions.items()) / max(n, 1), 3),
        "randomNextFraction": round(label_1 / max(n, 1), 4),
        "maskedFraction": round(masked / total_predicted, 4),
        "keptFraction": round(kept / total_predicted, 4),
        "replacedFraction": round(replaced / total_predicted, 4),
        "realTokensHistogram": [round(c / max(n, 1), 4) for c in lengths],
        "predictionsHistogram": {str(k): round(c / max(n, 1), 4) for k, c in sorted(predictions.items())},
    }


def total_variation(p: dict[str, float] | list[float], q: dict[str, float] | list[float]) -> float:
    """Half the L1 distance between two histograms (0: the same, 1: disjoint)."""
    a, b = _by_key(p), _by_key(q)
    keys = set(a) | set(b)
    return 0.5 * math.fsum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys)


def _by_key(histogram: dict[str, float] | list[float]) -> Mapping[Any, float]:
    """A histogram as a mapping: a list's buckets by their index."""
    return dict(enumerate(histogram)) if isinstance(histogram, list) else histogram
