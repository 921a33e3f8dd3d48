"""`python -m bert_trainer serve local`: KServe's model server with the transformer in front of the triton export's
SavedModel, started for real on a free port and asked over HTTP. Labels and scores are the SavedModel's own for the
text tokenised as training does; every bad request is a 400 naming the field (never a 500); the predictor speaks v2
and checks its tensors; a SQuAD request's answers are the spans predictions.json would hold; dynamic batching gives
each request its own rows; the transformer takes the flags KServe's controller appends."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bert_trainer import cli
from bert_trainer.finetune.classifier import BertClassifier, BertSpanHead
from bert_trainer.finetune.squad_data import postprocess
from bert_trainer.finetune.tokenization import load_tokenizer
from bert_trainer.model import BertConfig
from bert_trainer.model.export import write_export
from bert_trainer.model.savedmodel_export import ServingModule
from bert_trainer.model.triton_export import Serving
from bert_trainer.serve.instances import answers, encode, softmax
from bert_trainer.serve.manifest import load_manifest
from bert_trainer.serve.predictor import Batcher

from conftest import TINY
from tests.conftest import free_port

WORDS = [f"w{i}" for i in range(95)]
PAIRS = [{"sentence1": "w1 w2 w3 w4", "sentence2": "w5 w6"}, {"sentence1": "w7 " * 40, "sentence2": "w8 w9 hello"},
         {"sentence1": "W10 w11", "sentence2": "w12"}]


def write_vocab(folder: Path) -> Path:
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return vocab


def post(url: str, body: bytes, content_type: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def started(command: list[str], ready_url: str, log_path: Path) -> subprocess.Popen:
    """`python -m bert_trainer COMMAND...` running, once `ready_url` answers 200 (its log in `log_path`)."""
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "bert_trainer", *command], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.monotonic() + 120
    while True:  # until the server answers (TensorFlow's import and the model's load come first)
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The MRPC-like tiny classifier's triton export, served by `serve local` as job `tiny-mrpc`."""
    root = tmp_path_factory.mktemp("serve")
    cfg = BertConfig.from_dict(TINY)
    model = BertClassifier(cfg, 2, seed=3)
    repo = root / "export" / "triton"
    write_export("triton", model, cfg, str(repo), str(root / "scratch"), vocab_file=str(write_vocab(root)),
                 do_lower_case=True, serving=Serving("MRPC", "classifier", ("not_equivalent", "equivalent"), 32, True,
                                                     fields=("sentence1", "sentence2")))
    port = free_port()
    log = open(root / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "bert_trainer", "serve", "local", "--model_repository", str(repo),
                                "--model_name", "tiny-mrpc", "--http_port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # until the server answers (TensorFlow's import and the model's load come first)
        try:
            with urllib.request.urlopen(f"{base}/v1/models/tiny-mrpc", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert process.poll() is None, (root / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
        time.sleep(0.2)
    yield base, repo / "mrpc", model
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_the_server_answers_the_savedmodels_labels_for_text_tokenised_as_in_training(server, tmp_path):
    base, model_dir, _ = server
    # No content type, as `curl -d` sends it (form-encoded): the body is read as JSON all the same.
    status, body = post(f"{base}/v1/models/tiny-mrpc:predict", json.dumps({"instances": PAIRS}).encode())
    assert status == 200, body
    manifest = load_manifest(str(model_dir / "assets"))
    encoded = encode(manifest, load_tokenizer(manifest.vocab_file, True, str(tmp_path)), {"instances": PAIRS})
    fn = tf.saved_model.load(str(model_dir / "1" / "model.savedmodel")).signatures["serving_default"]
    probabilities = softmax(fn(**{k: tf.constant(v) for k, v in encoded.arrays.items()})["logits"].numpy().astype(np.float64))
    expected = [{"label": manifest.labels[int(p.argmax())], "score": round(float(p.max()), 6)} for p in probabilities]
    assert body == {"predictions": expected}
    assert encoded.arrays["input_ids"].shape == (3, 32)  # the 40-word pair truncated to max_seq_length
    assert encoded.arrays["input_ids"][2][:3].tolist() == [2, 5 + 10, 5 + 11]  # lower-cased: W10 is w10


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"", 400, "body: empty"),
    (b"   ", 400, "body: empty"),
    (b"{not json", 400, "body: not JSON"),
    (b"[1, 2]", 400, "body: must be a JSON object"),
    (b'{"inputs": []}', 400, "body: unknown field 'inputs'"),
    (b'{"instances": {}}', 400, "instances: must be a list, got dict"),
    (b'{"instances": []}', 400, "instances: empty"),
    (json.dumps({"instances": [PAIRS[0]] * 65}).encode(), 400, "instances: 65 given, at most 64"),
    (b'{"instances": ["w1"]}', 400, "instances[0]: must be an object with sentence1, sentence2, got str"),
    (b'{"instances": [{"sentence1": "w1"}]}', 400, "instances[0].sentence2: required"),
    (b'{"instances": [{"sentence1": "w1", "sentence2": "w2"}, {"sentence1": 7, "sentence2": "w2"}]}', 400,
     "instances[1].sentence1: must be a string, got int"),
    (b'{"instances": [{"sentence1": "w1", "sentence2": null}]}', 400, "instances[0].sentence2: required"),
    (b'{"instances": [{"sentence1": " ", "sentence2": "w2"}]}', 400, "instances[0].sentence1: empty"),
    (b'{"instances": [{"sentence": "w1", "sentence1": "w1", "sentence2": "w2"}]}', 400,
     "instances[0]: unknown field 'sentence' (allowed: sentence1, sentence2)"),
    (json.dumps({"instances": [{"sentence1": "w1 " * 3000, "sentence2": "w2"}]}).encode(), 400,
     "instances[0].sentence1: 9000 characters, at most 8192"),
    (b"{" + b" " * (4 * 1024 * 1024) + b"}", 413, "body: larger than 4194304 bytes"),
])
def test_a_bad_request_is_refused_naming_the_field_never_a_500(server, body, status, error):
    base, _, _ = server
    for content_type in ("application/json", None):
        got, answer = post(f"{base}/v1/models/tiny-mrpc:predict", body, content_type)
        assert (got, answer["error"][:len(error)]) == (status, error), answer


def test_the_predictor_speaks_v2_and_checks_its_tensors_as_triton_would(server):
    base, _, _ = server
    ids = {"name": "input_ids", "shape": [1, 4], "datatype": "INT32", "data": [2, 10, 11, 3]}
    mask = {"name": "input_mask", "shape": [1, 4], "datatype": "INT32", "data": [1, 1, 1, 1]}
    segments = {"name": "segment_ids", "shape": [1, 4], "datatype": "INT32", "data": [0, 0, 0, 0]}
    url = f"{base}/v2/models/mrpc/infer"
    status, body = post(url, json.dumps({"inputs": [ids, mask, segments]}).encode(), "application/json")
    assert status == 200, body
    assert [(o["name"], o["shape"], o["datatype"]) for o in body["outputs"]] == [("logits", [1, 2], "FP32")]
    for inputs, error in (
            ([{**ids, "datatype": "FP32"}, mask, segments], "inputs.input_ids: datatype must be INT32, got FP32"),
            ([ids, mask], "inputs: segment_ids is required"),
            ([ids, mask, {**segments, "shape": [1, 3], "data": [0, 0, 0]}], "inputs: input_ids, input_mask, segment_ids "
                                                                              "must have one shape"),
            ([{**ids, "shape": [1, 40], "data": [1] * 40}, mask, segments], "inputs.input_ids: shape must be [rows, "
                                                                              "sequence] with 1 to 1024 rows and a "
                                                                              "sequence of 1 to 32, got [1, 40]")):
        status, body = post(url, json.dumps({"inputs": inputs}).encode(), "application/json")
        assert (status, body["error"][:len(error)]) == (400, error), body


def test_a_squad_request_is_answered_with_the_span_predictions_json_holds(tmp_path):
    cfg = BertConfig.from_dict(TINY)
    model = BertSpanHead(cfg, seed=8)
    serving = Serving("squad", "span", (), 24, True, fields=("question", "context"),
                      options={"doc_stride": 6, "max_query_length": 6, "n_best_size": 5, "max_answer_length": 4,
                               "version_2_with_negative": False, "null_score_diff_threshold": 0.0})
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "serving.json").write_text(json.dumps(serving.manifest()))
    write_vocab(tmp_path / "assets")
    manifest = load_manifest(str(tmp_path / "assets"))
    tokenizer = load_tokenizer(manifest.vocab_file, True, str(tmp_path))
    contexts = [" ".join(WORDS[i:i + 30]) for i in (0, 40)]  # 30 words: several windows of 24 tokens
    request = {"instances": [{"question": "w3 w4", "context": c} for c in contexts]}
    encoded = encode(manifest, tokenizer, request)
    assert len(encoded.features) > 2 * 2 and encoded.arrays["input_ids"].shape[1] == 24
    outputs = {k: v.numpy() for k, v in ServingModule(model).serve(
        **{k: tf.constant(v) for k, v in encoded.arrays.items()}).items()}
    got = answers(manifest, encoded, outputs)
    texts, _ = postprocess(encoded.examples, encoded.features, outputs["start_logits"], outputs["end_logits"],
                           n_best=5, max_answer_length=4)
    assert [g["answer"] for g in got] == [texts[e.qid] for e in encoded.examples]
    assert all(g["answer"] == c[g["start"]:g["end"]] and g["answer"] for g, c in zip(got, contexts))


def test_dynamic_batching_runs_concurrent_requests_as_one_batch_and_returns_each_its_rows():
    runs: list[tuple[int, int]] = []

    async def run(arrays):
        runs.append(arrays["input_ids"].shape)
        ids = arrays["input_ids"].astype(np.float32)
        return {"start_logits": ids * 2, "logits": ids.sum(axis=1, keepdims=True)}

    async def main():
        batcher = Batcher(run, max_rows=32, delay_s=0.05, sequence_outputs=("start_logits",))
        requests = [{name: np.full((rows, length), rows, np.int32) for name in ("input_ids", "input_mask", "segment_ids")}
                    for rows, length in ((1, 8), (2, 16), (3, 8))]
        return requests, await asyncio.gather(*(batcher.submit(r) for r in requests))

    requests, results = asyncio.run(main())
    assert runs == [(6, 16)]  # one run, padded to the longest
    for request, result in zip(requests, results):
        ids = request["input_ids"]
        np.testing.assert_array_equal(result["start_logits"], ids * 2)  # its own rows, at its own length
        np.testing.assert_array_equal(result["logits"], ids.sum(axis=1, keepdims=True))


def test_the_transformer_takes_the_flags_kserve_appends_and_refuses_another_protocol(tmp_path, capsys):
    args = ["serve", "transformer", "--assets_uri", str(tmp_path), "--predictor_model", "mrpc",
            "--model_name", "bert-mrpc", "--predictor_host", "bert-mrpc-predictor.default", "--http_port", "8080"]
    parsed = cli.build_parser().parse_args(args + ["--predictor_protocol", "v2"])
    assert (parsed.model_name, parsed.predictor_host, parsed.http_port) == ("bert-mrpc", "bert-mrpc-predictor.default", 8080)
    for extra, error in ((["--protocol", "grpc-v2"], "--predictor_protocol: the transformer speaks v2"),
                         ([], f"--assets_uri: {tmp_path}: no serving.json")):
        with pytest.raises(SystemExit) as exited:
            cli.main(args + extra)
        assert exited.value.code == 2 and error in capsys.readouterr().err


def test_the_transformer_in_front_of_a_python_predictor_answers_as_serve_local(server, tmp_path):
    """The InferenceService's two containers with `runtime: python`, as two processes: `serve predictor` (the
    SavedModel alone over v2 REST, its repository where KServe's storage initializer puts it) and `serve transformer`
    reaching it at --predictor_host over the Open Inference Protocol. The labels are serve local's."""
    base, model_dir, _ = server
    predictor_port, transformer_port = free_port(), free_port()
    predictor = started(["serve", "predictor", "--model_repository", str(model_dir.parent), "--http_port",
                         str(predictor_port)], f"http://127.0.0.1:{predictor_port}/v2/models/mrpc/ready",
                        tmp_path / "predictor.log")
    try:
        transformer = started(["serve", "transformer", "--assets_uri", str(model_dir / "assets"), "--predictor_model",
                               "mrpc", "--model_name", "tiny-mrpc", "--predictor_host", f"127.0.0.1:{predictor_port}",
                               "--http_port", str(transformer_port)],
                              f"http://127.0.0.1:{transformer_port}/v1/models/tiny-mrpc", tmp_path / "transformer.log")
        try:
            body = json.dumps({"instances": PAIRS}).encode()
            got = post(f"http://127.0.0.1:{transformer_port}/v1/models/tiny-mrpc:predict", body, "application/json")
            assert got == post(f"{base}/v1/models/tiny-mrpc:predict", body, "application/json")
            assert got[0] == 200 and len(got[1]["predictions"]) == len(PAIRS)
        finally:
            transformer.terminate()
            transformer.wait(timeout=30)
    finally:
        predictor.terminate()
        predictor.wait(timeout=30)
