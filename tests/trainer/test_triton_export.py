"""The triton export format: for each served head (GLUE's classifier, SQuAD's span head) a Triton model repository
whose config.pbtxt parses as Triton's own ModelConfig protobuf message (tritonclient's model_config_pb2), names the
tensors the SavedModel's serving_default really has, and whose only version folder is ``1`` (Triton ignores
non-numeric folders such as ``assets/``); and pretraining cannot ask for one."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from bert_common.contract import serving_model_name
from bert_trainer import cli
from bert_trainer.finetune.classifier import BertClassifier, BertSpanHead
from bert_trainer.model import BertConfig
from bert_trainer.model.export import write_export
from bert_trainer.model.triton_export import Serving

from conftest import TINY

SQUAD_OPTIONS = {"doc_stride": 16, "max_query_length": 8, "n_best_size": 5, "max_answer_length": 10,
                 "version_2_with_negative": False, "null_score_diff_threshold": 0.0}
HEADS = {
    "classifier": (lambda cfg: BertClassifier(cfg, 2, seed=5),
                   Serving("MRPC", "classifier", ("not_equivalent", "equivalent"), 32, True,
                           fields=("sentence1", "sentence2"), tensorrt="fp16")),
    "span": (lambda cfg: BertSpanHead(cfg, seed=6), Serving("squad", "span", (), 48, True, fields=("question", "context"),
                                                            options=SQUAD_OPTIONS)),
}


def triton_model_config():
    """Triton's ModelConfig message class, from the model_config_pb2 tritonclient ships. Loaded from its file on
    its own: tritonclient.grpc's package also registers the v2 gRPC service, whose messages clash in protobuf's
    default pool with kserve's copy of the same service (a test process may import both)."""
    import tritonclient  # noqa: PLC0415

    path = os.path.join(os.path.dirname(tritonclient.__file__), "grpc", "model_config_pb2.py")
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def triton_versions(model_dir: Path) -> list[str]:
    """The folders Triton loads as versions of a model: numerically named, not starting with 0 (Triton's
    model-repository guide, "Model Versions"); any other folder is ignored."""
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, tuple[tf.Module, Serving, Path]]:
    cfg = BertConfig.from_dict(TINY)
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]) + "\n")
    out = {}
    for head, (build, serving) in HEADS.items():
        model = build(cfg)
        repo = tmp_path_factory.mktemp(head) / "export" / "triton"
        write_export("triton", model, cfg, str(repo), str(tmp_path_factory.mktemp("scratch")), vocab_file=str(vocab),
                     do_lower_case=True, serving=serving)
        out[head] = (model, serving, repo)
    return out


@pytest.mark.parametrize("head", list(HEADS))
def test_the_repository_holds_one_model_with_version_1_and_the_transformers_assets(repos, head):
    _, serving, repo = repos[head]
    assert [p.name for p in repo.iterdir()] == [serving.model] == [serving_model_name(serving.task)]
    model_dir = repo / serving.model
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "assets", "config.pbtxt"]
    assert triton_versions(model_dir) == ["1"]  # assets/ is not taken for a version
    assert (model_dir / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (model_dir / "assets").iterdir()) == ["serving.json", "vocab.txt"]
    manifest = json.loads((model_dir / "assets" / "serving.json").read_text())
    assert manifest["head"] == head and manifest["labels"] == list(serving.labels)
    assert manifest["fields"] == list(serving.fields)
    assert (manifest["max_seq_length"], manifest["do_lower_case"]) == (serving.max_seq_length, True)
    assert manifest.get("options", {}) == (SQUAD_OPTIONS if head == "span" else {})


@pytest.mark.parametrize("head", list(HEADS))
def test_config_pbtxt_is_tritons_model_config_naming_the_signatures_tensors(repos, head):
    pb = triton_model_config()
    model, serving, repo = repos[head]
    config = text_format.Parse((repo / serving.model / "config.pbtxt").read_text(), pb.ModelConfig())
    assert (config.name, config.platform) == (serving.model, "tensorflow_savedmodel")
    assert config.max_batch_size == 32
    assert config.dynamic_batching.preferred_batch_size == [16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000

    loaded = tf.saved_model.load(str(repo / serving.model / "1" / "model.savedmodel"))
    fn = loaded.signatures["serving_default"]
    _, signature_inputs = fn.structured_input_signature
    # Triton's dims exclude the batch dimension that max_batch_size adds.
    assert {i.name: (pb.DataType.Name(i.data_type), list(i.dims)) for i in config.input} == {
        name: ("TYPE_INT32", [-1 if dim is None else dim for dim in spec.shape.as_list()[1:]])
        for name, spec in signature_inputs.items()}
    assert all(spec.dtype == tf.int32 and spec.shape.as_list() == [None, None] for spec in signature_inputs.values())
    x = {name: tf.constant(np.full((3, 12), value, np.int32)) for name, value in
         (("input_ids", 7), ("input_mask", 1), ("segment_ids", 0))}
    served = fn(**x)
    assert {o.name: (pb.DataType.Name(o.data_type), list(o.dims)) for o in config.output} == {
        name: ("TYPE_FP32", [-1 if dim == 12 else dim for dim in value.shape[1:]]) for name, value in served.items()}
    assert all(value.dtype == tf.float32 for value in served.values())

    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if serving.tensorrt == "fp16":
        assert [(a.name, dict(a.parameters)) for a in accelerators] == [("tensorrt", {"precision_mode": "FP16"})]
    else:
        assert not config.HasField("optimization")


def test_a_triton_repository_needs_a_served_head_and_a_vocab(tmp_path):
    cfg = BertConfig.from_dict(TINY)
    with pytest.raises(ValueError, match="fine-tuned model"):
        write_export("triton", BertClassifier(cfg, 2), cfg, str(tmp_path / "a"), str(tmp_path / "s"))
    with pytest.raises(ValueError, match="vocab.txt"):
        write_export("triton", BertClassifier(cfg, 2), cfg, str(tmp_path / "b"), str(tmp_path / "s"),
                     serving=HEADS["classifier"][1])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pretraining_cannot_export_a_triton_repository(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["pretrain", "--input_files_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
                  "--bert_config_json", json.dumps(TINY), "--export_formats", "hf,triton"])
    assert exited.value.code == 2
    assert "--export_formats: triton serves a fine-tuned model (glue, squad)" in capsys.readouterr().err
