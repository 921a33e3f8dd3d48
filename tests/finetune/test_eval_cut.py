"""Evaluation batches cut to their longest example (finetune/eval_batches.py): the glue task's dev scoring and
predict's GLUE batches see shorter inputs and give the padded run's logits, in the examples' order."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from bert_trainer.finetune.classifier import BertClassifier  # noqa: E402
from bert_trainer.finetune.eval_batches import cut_batches  # noqa: E402
from bert_trainer.tasks.glue.driver import dev_logits, predict  # noqa: E402
from bert_trainer.tasks.predict.driver import run_batches  # noqa: E402
from tests.finetune.test_engine import SEQ, TINY, pairs  # noqa: E402

COUNT, BATCH = 45, 8  # the last batch is short


class LengthSpy(tf.Module):
    """The classifier, recording the sequence length of every batch it is run on (inside a tf.function too)."""

    def __init__(self, model: BertClassifier) -> None:
        super().__init__()
        self.model = model
        self.lengths: list[int] = []

    def __call__(self, ids, mask, segments, **kwargs):
        tf.py_function(lambda n: self.lengths.append(int(n)), [tf.shape(ids)[1]], [])
        return self.model(ids, mask, segments, **kwargs)


@pytest.fixture(scope="module")
def model() -> BertClassifier:
    return BertClassifier(TINY, 3, seed=4)


@pytest.fixture(scope="module")
def features() -> dict[str, np.ndarray]:
    return pairs(COUNT, seed=7, lengths=(3, 30))


def padded_logits(model: BertClassifier, features: dict[str, np.ndarray]) -> np.ndarray:
    return model(features["input_ids"], features["input_mask"], features["segment_ids"], training=False).numpy()


def test_glue_dev_scoring_runs_shorter_batches_and_predicts_what_the_padded_run_does(model, features):
    spy = LengthSpy(model)
    predicted = predict(spy, features, BATCH, tf.float32)
    assert len(spy.lengths) == -(-COUNT // BATCH)
    assert spy.lengths == sorted(spy.lengths) and spy.lengths[0] < SEQ  # shortest first, cut
    assert all(length % 8 == 0 for length in spy.lengths)
    assert sum(spy.lengths) < len(spy.lengths) * SEQ
    full = padded_logits(model, features)
    np.testing.assert_array_equal(predicted, np.argmax(full, -1))
    np.testing.assert_allclose(dev_logits(model, features, BATCH, tf.float32), full, rtol=0, atol=2e-5)


def test_predict_cuts_glue_batches_and_returns_rows_in_order(model, features):
    seen: list[int] = []

    def serve(input_ids, input_mask, segment_ids):
        seen.append(int(input_ids.shape[1]))
        return {"logits": model(input_ids, input_mask, segment_ids, training=False)}

    padded = run_batches(serve, features, BATCH)
    assert set(seen) == {SEQ}
    seen.clear()
    cut = run_batches(serve, features, BATCH, cut=True)
    assert max(seen) <= SEQ and min(seen) < SEQ and sum(seen) < len(seen) * SEQ
    np.testing.assert_allclose(cut["logits"], padded["logits"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(padded["logits"], padded_logits(model, features), rtol=0, atol=2e-5)


def test_every_row_is_in_one_batch_with_its_own_features(features):
    seen = []
    for rows, batch in cut_batches(features, BATCH, 8):
        length = batch["input_ids"].shape[1]
        assert features["input_mask"][rows, length:].sum() == 0  # nothing real was cut away
        np.testing.assert_array_equal(batch["labels"], features["labels"][rows])
        np.testing.assert_array_equal(batch["input_ids"], features["input_ids"][rows, :length])
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(COUNT))
