"""The BERT model matches Google's configs and behaves like BERT."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.data.synthetic import make_batch
from bert_trainer.model import BertConfig, BertPretrainer, ConfigError, pretraining_loss


def n_params(model: BertPretrainer) -> int:
    return int(sum(np.prod(v.shape) for v in model.named_variables().values()))


# Published encoder sizes (BertModel incl. pooler): base 109,482,240; large 335,141,888.
# Pretraining heads add H*H+H (transform) + 2H (LayerNorm) + V (MLM bias, decoder tied) + 2H+2 (NSP).
def heads(h: int, v: int = 30522) -> int:
    return h * h + h + 2 * h + v + 2 * h + 2


def test_base_preset_has_bert_base_parameter_count():
    assert 109_482_240 + heads(768) == 110_106_428
    assert n_params(BertPretrainer(BertConfig.preset("base"))) == 110_106_428


def test_large_preset_is_googles_uncased_large():
    # Building BERT-Large (336M weights) costs ~12 s on CI's 2 cores; its shape facts suffice here.
    cfg = BertConfig.preset("large")
    shape = (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size)
    assert shape == (24, 1024, 16, 4096)
    h, layers, v = 1024, 24, 30522
    per_layer = 4 * (h * h + h) + 2 * h + (h * 4096 + 4096) + (4096 * h + h) + 2 * h
    encoder = (v + 512 + 2) * h + 2 * h + layers * per_layer + h * h + h
    assert encoder == 335_141_888 and encoder + heads(h) == 336_226_108


def test_mlm_decoder_is_tied_to_word_embeddings(tiny_config):
    tiny_config = BertConfig.from_dict({**tiny_config.to_dict(), "vocab_size": 111})  # unlike any other dim
    model = BertPretrainer(tiny_config)
    vocab_sized = [n for n, v in model.named_variables().items() if v.shape[0] == tiny_config.vocab_size]
    # Only the embedding table and the MLM output bias: no separate decoder matrix.
    assert vocab_sized == ["bert/embeddings/word_embeddings", "cls/predictions/output_bias"]
    batch = make_batch(0, 2, tiny_config.vocab_size, 32, 5)
    with tf.GradientTape() as tape:
        loss = pretraining_loss(model(batch), batch)["mlm_loss"]
    emb = model.bert.word_embeddings
    grad = tf.convert_to_tensor(tape.gradient(loss, emb))
    # Rows of words never seen in the input still get gradient through the tied decoder.
    unseen = sorted(set(range(5, tiny_config.vocab_size)) - set(batch["input_ids"].ravel().tolist()))
    assert unseen and float(tf.reduce_sum(tf.abs(tf.gather(grad, unseen)))) > 0


def test_same_seed_same_weights_and_padding_is_ignored(tiny_config):
    a, b = BertPretrainer(tiny_config, seed=7), BertPretrainer(tiny_config, seed=7)
    for (na, va), (nb, vb) in zip(a.named_variables().items(), b.named_variables().items()):
        assert na == nb and np.array_equal(va.numpy(), vb.numpy())
    batch = make_batch(3, 2, tiny_config.vocab_size, 32, 5, fixed_length=False)
    changed = dict(batch)
    ids = batch["input_ids"].copy()
    ids[batch["input_mask"] == 0] = 77  # garbage in padded slots
    changed["input_ids"] = ids
    out1, out2 = a(batch), a(changed)
    np.testing.assert_allclose(out1["mlm_logits"].numpy(), out2["mlm_logits"].numpy(), atol=1e-5)


@pytest.mark.parametrize("bad,field", [({"hidden_size": 65}, "hidden_size"), ({"hidden_act": "nope"}, "hidden_act")])
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        BertConfig.from_dict({"vocab_size": 100, "hidden_size": 64, "num_attention_heads": 2, **bad})


def test_no_broadcasting_batch_matmul(tiny_config):
    """Every matmul against a weight is 2-D. A [B,S,H] x [H,O] BatchMatMulV2 broadcasts the kernel, and its
    gradient is a [B,H,O] tensor summed over B: under XLA on CPU the largest cost of a BERT-Base step."""
    model = BertPretrainer(tiny_config)
    batch = {k: tf.constant(v) for k, v in make_batch(0, 2, tiny_config.vocab_size, 16, 3).items()}

    def step(features):
        with tf.GradientTape() as tape:
            loss = pretraining_loss(model(features, training=True), features)["loss"]
        return tape.gradient(loss, model.trainable_variables)

    graph = tf.function(step).get_concrete_function(batch).graph
    batch_matmuls = [op for op in graph.get_operations() if op.type.startswith("BatchMatMul")]
    assert batch_matmuls, "attention should still use batched matmuls"
    for op in batch_matmuls:
        ranks = {inp.shape.rank for inp in op.inputs}
        assert len(ranks) == 1, f"{op.name} mixes ranks {ranks}"
