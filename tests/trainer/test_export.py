"""`export`: our checkpoints as Hugging Face folders. The real MiniLM survives import then export bit for bit;
fine-tuned, SQuAD and pretraining checkpoints come back through the importer whole; bad flags exit 2 naming
the flag; an s3:// output gets every file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from safetensors import safe_open
from safetensors.numpy import load_file

from bert_trainer import cli, storage
from bert_trainer.dist import SingleProcess
from bert_trainer.finetune.classifier import BertClassifier, BertSpanHead
from bert_trainer.finetune.losses import classification_loss
from bert_trainer.finetune.loop import fine_tune
from bert_trainer.model import BertConfig, BertPretrainer
from bert_trainer.model.hf_export import write_hf_export
from bert_trainer.model.hf_names import HF_BUFFERS, canonical_hf_name, google_to_hf, hf_to_google
from bert_trainer.model.importer import load_init_checkpoint, load_safetensors
from bert_trainer.reports import ReportWriter

from conftest import TINY

HEADS_HF = {"cls.predictions.bias", "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
            "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
TINY_JSON = json.dumps(TINY)


@pytest.fixture(scope="module")
def minilm_export(minilm_dir, tmp_path_factory) -> Path:
    """The real MiniLM imported into our pretraining model, then exported."""
    cfg = BertConfig.from_json((minilm_dir / "config.json").read_text())
    model = BertPretrainer(cfg)
    load_init_checkpoint(model, str(minilm_dir), str(tmp_path_factory.mktemp("scratch")))
    out = tmp_path_factory.mktemp("hf")
    write_hf_export({n: v.numpy() for n, v in model.named_variables().items()}, cfg, str(out),
                    str(tmp_path_factory.mktemp("stage")), vocab_file=str(minilm_dir / "vocab.txt"), do_lower_case=True)
    return out


def test_minilm_import_then_export_gives_back_the_same_tensors_bit_for_bit(minilm_dir, minilm_export):
    original = load_file(str(minilm_dir / "model.safetensors"))
    exported = load_file(str(minilm_export / "model.safetensors"))
    not_carried = {name for name in original if HF_BUFFERS.search(name)}
    assert not_carried == {"embeddings.position_ids"}  # an index buffer, not a weight; transformers rebuilds it
    for name, value in original.items():
        if name in not_carried:
            continue
        ours = exported[canonical_hf_name(name)]  # BertModel's "embeddings.*": BertForPreTraining's "bert.embeddings.*"
        assert (ours.dtype, ours.shape) == (value.dtype, value.shape), name
        assert ours.tobytes() == value.tobytes(), name
    # What the export adds: the pretraining heads a sentence-embedding BertModel does not have (freshly initialised).
    assert set(exported) - {canonical_hf_name(n) for n in original} == HEADS_HF
    with safe_open(str(minilm_export / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt"}  # transformers refuses a safetensors file without it


def test_minilm_export_config_and_tokenizer_match_the_original(minilm_dir, minilm_export):
    original = json.loads((minilm_dir / "config.json").read_text())
    config = json.loads((minilm_export / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"] and config["model_type"] == "bert"
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                  "vocab_size", "initializer_range", "layer_norm_eps"):
        assert config[field] == original[field], field
    assert (minilm_export / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()
    assert json.loads((minilm_export / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}


def test_names_translate_both_ways_for_every_head():
    for model in (BertPretrainer(BertConfig.from_dict(TINY)), BertClassifier(BertConfig.from_dict(TINY), 3),
                  BertSpanHead(BertConfig.from_dict(TINY))):
        for gname in model.named_variables():
            hf, transpose = google_to_hf(gname)
            assert hf_to_google(hf) == (gname, transpose), gname
    assert google_to_hf("output_weights") == ("classifier.weight", False)
    assert google_to_hf("cls/squad/output_bias") == ("qa_outputs.bias", False)
    assert google_to_hf("bert/encoder/layer_1/attention/self/query/kernel") == (
        "bert.encoder.layer.1.attention.self.query.weight", True)
    assert hf_to_google("embeddings.position_ids") is None  # a buffer, no weight
    with pytest.raises(ValueError, match="no Hugging Face name"):
        google_to_hf("step")


def _glue_finetuned(output_dir: Path, num_labels: int) -> BertClassifier:
    """A tiny classifier fine-tuned by the GLUE loop, which leaves its checkpoint (with Adam slots) in output_dir."""
    cfg = BertConfig.from_dict(TINY)
    rng = np.random.default_rng(0)
    n, seq = 16, 16
    train = {"input_ids": rng.integers(0, TINY["vocab_size"], (n, seq), dtype=np.int32),
             "input_mask": np.ones((n, seq), np.int32), "segment_ids": np.zeros((n, seq), np.int32),
             "labels": rng.integers(0, num_labels, n, dtype=np.int32)}
    args = argparse.Namespace(precision="fp32", num_train_epochs=1.0, train_batch_size=8, learning_rate=1e-3,
                              warmup_proportion=0.1, optimizer="adam", beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                              weight_decay_rate=0.01, output_dir=str(output_dir), keep_checkpoint_max=0, seed=1,
                              use_xla=False, save_checkpoints_steps=1000, num_accumulation_steps=1,
                              allreduce_post_accumulation=False, report_every_steps=20, clip_norm=1.0,
                              adam_bias_correction=False)
    model = BertClassifier(cfg, num_labels)
    fine_tune(model, train, classification_loss, args, SingleProcess(), ReportWriter(str(output_dir), chief=True),
              str(output_dir.parent / "scratch"))
    return model


@pytest.fixture()
def vocab(tmp_path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]) + "\n")
    return path


def export(checkpoint: str, output_dir: str, *extra: str) -> int:
    return cli.main(["export", "--checkpoint", checkpoint, "--output_dir", output_dir, "--bert_config_json", TINY_JSON,
                     *extra])


def test_glue_checkpoint_exports_and_reimports_with_nothing_missing_or_unused(tmp_path, vocab):
    model = _glue_finetuned(tmp_path / "glue", num_labels=3)
    assert export(str(tmp_path / "glue"), str(tmp_path / "hf"), "--vocab_file", str(vocab)) == 0  # a task's output dir
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 3
    names = set(load_file(str(tmp_path / "hf" / "model.safetensors")))
    assert {n for n in names if not n.startswith("bert.")} == {"classifier.weight", "classifier.bias"}
    again = BertClassifier(BertConfig.from_dict(TINY), 3, seed=99)
    report = load_safetensors(again, str(tmp_path / "hf" / "model.safetensors"))
    assert (report.missing, report.unused) == ([], [])
    assert len(report.loaded) == len(model.named_variables())
    for name, var in model.named_variables().items():
        np.testing.assert_array_equal(again.named_variables()[name].numpy(), var.numpy(), err_msg=name)


@pytest.mark.parametrize(("build", "arch", "head"), [
    (lambda cfg: BertSpanHead(cfg), "BertForQuestionAnswering", {"qa_outputs.weight", "qa_outputs.bias"}),
    (lambda cfg: BertPretrainer(cfg), "BertForPreTraining", HEADS_HF),
])
def test_squad_and_pretraining_checkpoints_export_with_their_heads(tmp_path, build, arch, head):
    cfg = BertConfig.from_dict(TINY)
    model = build(cfg)
    prefix = tf.train.Checkpoint(model=model, step=tf.Variable(7, dtype=tf.int64)).write(str(tmp_path / "ckpt-7"))
    assert export(prefix, str(tmp_path / "hf")) == 0  # a checkpoint prefix; no vocab, so no tokenizer files
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [arch]
    names = set(load_file(str(tmp_path / "hf" / "model.safetensors")))
    assert {n for n in names if not n.startswith("bert.")} == head
    report = load_safetensors(build(cfg), str(tmp_path / "hf" / "model.safetensors"))
    assert (report.missing, report.unused) == ([], [])


@pytest.fixture()
def span_checkpoint(tmp_path) -> str:
    model = BertSpanHead(BertConfig.from_dict(TINY))
    return tf.train.Checkpoint(model=model).write(str(tmp_path / "run" / "checkpoints" / "ckpt-3"))


@pytest.mark.parametrize(("change", "flag"), [
    (lambda a, t: a.__setitem__(1, str(t / "nowhere")), "--checkpoint"),
    (lambda a, t: a.__setitem__(5, '{"hidden_size": 64}'), "--bert_config_json"),
    (lambda a, t: a.__setitem__(5, json.dumps({**TINY, "hidden_size": 32})), "--bert_config_json"),  # not this ckpt's
    (lambda a, t: a.extend(["--vocab_file", str(t / "big.txt")]), "--vocab_file"),
    (lambda a, t: a.extend(["--vocab_file", str(t / "absent.txt")]), "--vocab_file"),
    (lambda a, t: a.__setitem__(3, str(t / "big.txt" / "hf")), "--output_dir"),  # under a file
])
def test_bad_export_flags_exit_2_naming_the_flag(tmp_path, span_checkpoint, capsys, change, flag):
    (tmp_path / "big.txt").write_text("\n".join(f"w{i}" for i in range(TINY["vocab_size"] + 1)))
    args = ["--checkpoint", str(tmp_path / "run"), "--output_dir", str(tmp_path / "hf"), "--bert_config_json",
            TINY_JSON]
    change(args, tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", *args])
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "hf" / "config.json").exists()


def test_a_bad_checkpoint_flag_fails_before_tensorflow_loads(tmp_path):
    code = ("import sys; from bert_trainer.cli import main\n"
            "try: main(sys.argv[1:])\n"
            "except SystemExit as e: print(e.code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, "export", "--checkpoint", str(tmp_path), "--output_dir",
                             str(tmp_path / "hf"), "--bert_model", "base"], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "--checkpoint" in result.stderr


def test_export_from_and_to_s3_lands_all_four_files(s3_env, bucket, tmp_path, span_checkpoint, vocab):
    for entry in storage.list_files(str(tmp_path / "run")):
        storage.upload_file(entry.uri, f"s3://{bucket}/run/{entry.relpath}")
    assert export(f"s3://{bucket}/run", f"s3://{bucket}/export/hf", "--vocab_file", str(vocab)) == 0
    landed = {e.relpath: e for e in storage.list_files(f"s3://{bucket}/export/hf")}
    assert sorted(landed) == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    assert storage.read_bytes(landed["vocab.txt"].uri) == vocab.read_bytes()
    assert json.loads(storage.read_bytes(landed["config.json"].uri))["architectures"] == ["BertForQuestionAnswering"]
    local = tmp_path / "model.safetensors"
    storage.download_file(landed["model.safetensors"].uri, str(local))
    report = load_safetensors(BertSpanHead(BertConfig.from_dict(TINY)), str(local))
    assert (report.missing, report.unused) == ([], [])
