"""SavedModel export: the serving_default signature (int32 input_ids/input_mask/segment_ids [batch, seq]) gives what
the in-process model gives for every head, its outputs are named by head, assets/ holds the HF metadata files, and
`export --format savedmodel` writes one from a checkpoint, local or s3://."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer import cli, storage
from bert_trainer.finetune.classifier import BertClassifier, BertSpanHead
from bert_trainer.model import BertConfig, BertPretrainer
from bert_trainer.model.savedmodel_export import load_serving, write_savedmodel

from conftest import TINY

TINY_JSON = json.dumps(TINY)
HEADS = {
    "classifier": (lambda cfg: BertClassifier(cfg, 3, seed=5), "BertForSequenceClassification", {"logits"}),
    "squad": (lambda cfg: BertSpanHead(cfg, seed=6), "BertForQuestionAnswering", {"start_logits", "end_logits"}),
    "pretraining": (lambda cfg: BertPretrainer(cfg, seed=7), "BertForPreTraining", {"mlm_logits", "nsp_logits"}),
}


def inputs(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Random ids with a different amount of padding in each row, and a sentence B."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, TINY["vocab_size"], (batch, seq), dtype=np.int32)
    lengths = np.linspace(seq // 3, seq, batch).astype(int)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    segments = ((np.arange(seq)[None, :] >= lengths[:, None] // 2) & (mask == 1)).astype(np.int32)
    return {"input_ids": ids * mask, "input_mask": mask, "segment_ids": segments}


def in_process(head: str, model: tf.Module, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if head == "classifier":
        return {"logits": model(x["input_ids"], x["input_mask"], x["segment_ids"]).numpy()}
    if head == "squad":
        starts, ends = model(x["input_ids"], x["input_mask"], x["segment_ids"])
        return {"start_logits": starts.numpy(), "end_logits": ends.numpy()}
    batch, seq = x["input_ids"].shape
    out = model({**x, "masked_lm_positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1))})
    return {name: value.numpy() for name, value in out.items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, tuple[tf.Module, Path]]:
    """Each head's model (with non-zero biases, so a dropped bias would show) and its SavedModel folder."""
    cfg = BertConfig.from_dict(TINY)
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]) + "\n")
    out = {}
    for head, (build, _, _) in HEADS.items():
        model = build(cfg)
        for name, var in model.named_variables().items():
            if name.endswith("output_bias"):
                var.assign(tf.random.stateless_normal(var.shape, seed=[1, 2]))
        folder = tmp_path_factory.mktemp(head) / "savedmodel"
        write_savedmodel(model, cfg, str(folder), str(tmp_path_factory.mktemp("scratch")),
                         vocab_file=str(vocab) if head == "classifier" else None, do_lower_case=True)
        out[head] = (model, folder)
    return out


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize(("batch", "seq"), [(4, 24), (1, 7)])  # any batch and sequence length
def test_serving_signature_gives_the_in_process_models_outputs(saved, head, batch, seq):
    model, folder = saved[head]
    _, serve, arch = load_serving(str(folder))
    assert arch == HEADS[head][1]
    x = inputs(batch, seq, seed=batch * seq)
    served = {name: value.numpy() for name, value in serve(**{k: tf.constant(v) for k, v in x.items()}).items()}
    expected = in_process(head, model, x)
    assert set(served) == set(expected) == HEADS[head][2]
    for name, value in expected.items():
        assert served[name].dtype == np.float32 and served[name].shape == value.shape, name
        assert np.max(np.abs(served[name] - value)) < 1e-5, name
    if head == "pretraining":
        assert served["mlm_logits"].shape == (batch, seq, TINY["vocab_size"])  # every position


@pytest.mark.parametrize("head", list(HEADS))
def test_the_signature_takes_int32_inputs_of_any_batch_and_length(saved, head):
    _, serve, _ = load_serving(str(saved[head][1]))
    _, kwargs = serve.structured_input_signature
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in kwargs.items()} == {
        name: (tf.int32, [None, None]) for name in ("input_ids", "input_mask", "segment_ids")}
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):  # floats are not token ids
        serve(input_ids=tf.zeros([1, 4]), input_mask=tf.ones([1, 4]), segment_ids=tf.zeros([1, 4]))


def test_assets_ship_the_hf_config_and_the_tokenizer(saved):
    assets = saved["classifier"][1] / "assets"
    assert sorted(p.name for p in assets.iterdir()) == ["config.json", "tokenizer_config.json", "vocab.txt"]
    config = json.loads((assets / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 3
    assert json.loads((assets / "tokenizer_config.json").read_text())["do_lower_case"] is True
    squad_assets = saved["squad"][1] / "assets"
    assert sorted(p.name for p in squad_assets.iterdir()) == ["config.json"]  # no vocab given: no tokenizer files
    assert (saved["squad"][1] / "saved_model.pb").is_file()
    assert sorted(p.name for p in (saved["squad"][1] / "variables").iterdir()) == [
        "variables.data-00000-of-00001", "variables.index"]


def export(checkpoint: str, output_dir: str, *extra: str) -> int:
    return cli.main(["export", "--checkpoint", checkpoint, "--output_dir", output_dir, "--bert_config_json", TINY_JSON,
                     "--format", "savedmodel", *extra])


def test_export_format_savedmodel_from_a_checkpoint_serves_its_logits(tmp_path):
    model = BertSpanHead(BertConfig.from_dict(TINY), seed=11)
    tf.train.Checkpoint(model=model, step=tf.Variable(3, dtype=tf.int64)).write(str(tmp_path / "run" / "checkpoints"
                                                                                    / "ckpt-3"))
    assert export(str(tmp_path / "run"), str(tmp_path / "sm")) == 0
    _, serve, arch = load_serving(str(tmp_path / "sm"))
    assert arch == "BertForQuestionAnswering"
    x = inputs(3, 16, seed=1)
    served = serve(**{k: tf.constant(v) for k, v in x.items()})
    expected = in_process("squad", model, x)
    assert max(np.max(np.abs(served[n].numpy() - expected[n])) for n in expected) < 1e-5


def test_export_savedmodel_to_s3_lands_the_graph_variables_and_assets(s3_env, bucket, tmp_path):
    model = BertClassifier(BertConfig.from_dict(TINY), 2, seed=3)
    prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt-1"))
    assert export(prefix, f"s3://{bucket}/sm") == 0
    landed = sorted(e.relpath for e in storage.list_files(f"s3://{bucket}/sm"))
    assert landed == ["assets/config.json", "fingerprint.pb", "saved_model.pb", "variables/variables.data-00000-of-00001",
                      "variables/variables.index"]
    local = tmp_path / "back"
    for relpath in landed:
        storage.download_file(f"s3://{bucket}/sm/{relpath}", str(local / relpath))
    _, serve, arch = load_serving(str(local))
    x = inputs(2, 8, seed=2)
    assert np.max(np.abs(serve(**{k: tf.constant(v) for k, v in x.items()})["logits"].numpy()
                         - in_process("classifier", model, x)["logits"])) < 1e-5


def test_an_unknown_export_format_exits_2_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "--checkpoint", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--bert_model",
                  "base", "--format", "onnx"])
    assert exit_.value.code == 2 and "--format" in capsys.readouterr().err
