"""A GLUE run of the real MiniLM with --export_formats hf,savedmodel on a slice of real MRPC (../shared/data/mrpc),
output on s3://:
both export folders land under <output_dir>/export/, results.json lists them, the HF export re-imports whole, and
`predict` on each export (and on the run's checkpoint) scores the dev slice exactly as the run's own dev
evaluation did. Bad predict flags exit 2 naming the flag, before TensorFlow loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bert_trainer import cli, storage
from tests.conftest import REPO
from tests.tf_state import run_trainer

DATA = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.needs_shared("data/mrpc/train.tsv", "data/mrpc/dev.tsv", "data/squad/dev-v1.1.json")

BUCKET = "predict"
OUT = f"s3://{BUCKET}/glue"
# A small BERT over MiniLM's real uncased vocab, for the tests that need no trained model.
SMALL = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 128}
SEQ, EVAL_BATCH = 64, 16


def slice_tsv(source: Path, target: Path, rows: int) -> None:
    """The header and the first `rows` pairs of a GLUE file, bytes as they are (the BOM included)."""
    target.write_bytes(b"".join(source.read_bytes().splitlines(keepends=True)[: rows + 1]))


@pytest.fixture(scope="module")
def trained(minilm_dir, s3_server, tmp_path_factory) -> dict:
    """One glue run from the real MiniLM: 64 real MRPC train pairs (4 steps at lr 1e-5; dropout is seeded, so the run
    repeats itself, and a higher rate pulls this head to the majority class), scored on 48 dev pairs, exported both
    ways to s3://. A pretrained encoder under a barely trained head predicts both classes (checked below), so
    equal metrics mean equal per-example predictions, not one constant class."""
    import boto3

    boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("mrpc")
    (root / "MRPC").mkdir()
    slice_tsv(DATA / "mrpc" / "train.tsv", root / "MRPC" / "train.tsv", 64)
    slice_tsv(DATA / "mrpc" / "dev.tsv", root / "MRPC" / "dev.tsv", 48)
    args = ["glue", "--task_name", "MRPC", "--data_dir", str(root / "MRPC"), "--vocab_file",
            str(minilm_dir / "vocab.txt"), "--do_lower_case", "--bert_config_file", str(minilm_dir / "config.json"),
            "--init_checkpoint", str(minilm_dir / "model.safetensors"),
            "--output_dir", OUT, "--do_train", "--do_eval", "--max_seq_length", str(SEQ), "--train_batch_size", "16",
            "--eval_batch_size", str(EVAL_BATCH), "--num_train_epochs", "1", "--learning_rate", "1e-5",
            "--export_formats", "savedmodel,hf"]
    result = run_trainer(args, cwd=root, env=s3_server)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"dev": str(root / "MRPC" / "dev.tsv"), "root": root, "stderr": result.stderr}


def results(s3_env) -> dict:
    return json.loads(storage.read_bytes(f"{OUT}/results.json"))


def test_both_exports_land_under_the_output_and_results_list_them(trained, s3_env):
    body = results(s3_env)
    assert body["exported"] == ["hf", "savedmodel"]  # contract order, whatever order the flag gave
    assert "artifacts" not in body
    landed = {e.relpath for e in storage.list_files(f"{OUT}/export")}
    assert {"hf/config.json", "hf/model.safetensors", "hf/vocab.txt", "hf/tokenizer_config.json",
            "savedmodel/saved_model.pb", "savedmodel/variables/variables.index", "savedmodel/assets/config.json",
            "savedmodel/assets/vocab.txt", "savedmodel/assets/tokenizer_config.json"} <= landed
    assert "event=export format=hf" in trained["stderr"] and "event=export format=savedmodel" in trained["stderr"]


def test_the_hf_export_reimports_with_nothing_missing_or_unused(trained, s3_env, minilm_dir, tmp_path):
    from bert_trainer.finetune.classifier import BertClassifier
    from bert_trainer.model import BertConfig
    from bert_trainer.model.importer import load_safetensors

    local = tmp_path / "model.safetensors"
    storage.download_file(f"{OUT}/export/hf/model.safetensors", str(local))
    cfg = BertConfig.from_json((minilm_dir / "config.json").read_text())
    report = load_safetensors(BertClassifier(cfg, 2), str(local))
    assert (report.missing, report.unused) == ([], [])
    assert storage.read_bytes(f"{OUT}/export/hf/vocab.txt") == (minilm_dir / "vocab.txt").read_bytes()
    assert json.loads(storage.read_bytes(f"{OUT}/export/hf/tokenizer_config.json"))["do_lower_case"] is True


KINDS = ("export/hf", "export/savedmodel", "checkpoint")


@pytest.fixture(scope="module")
def predicted(trained, s3_server, minilm_dir, tmp_path_factory) -> dict[str, Path]:
    """`predict` on the dev slice with each kind of model: the two exports (vocab and lower-casing from the folder
    itself) and the run's output dir (its newest checkpoint, with the model flags and the vocab)."""
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_server.items():
            patch.setenv(key, value)
        for kind in KINDS:
            where, extra = f"{OUT}/{kind}", []
            if kind == "checkpoint":
                where = OUT
                extra = ["--bert_config_file", str(minilm_dir / "config.json"), "--vocab_file",
                         str(minilm_dir / "vocab.txt"), "--do_lower_case"]
            out[kind] = tmp_path_factory.mktemp(kind.replace("/", "-"))
            assert cli.main(["predict", "--model", where, "--task_name", "MRPC", "--predict_file", trained["dev"],
                             "--output_dir", str(out[kind]), "--max_seq_length", str(SEQ), "--predict_batch_size",
                             str(EVAL_BATCH), *extra]) == 0
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_predict_scores_the_dev_slice_as_the_training_run_did(predicted, s3_env, kind):
    metrics = json.loads((predicted[kind] / "metrics.json").read_text())
    assert metrics["examples"] == 48
    assert metrics["metrics"] == results(s3_env)["dev"]
    rows = (predicted[kind] / "predictions.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 49
    assert [r.split("\t")[0] for r in rows[1:]] == [str(i) for i in range(48)]
    assert {r.split("\t")[1] for r in rows[1:]} == {"0", "1"}  # not one constant class: equal metrics mean something


def test_predict_writes_the_same_predictions_from_every_kind_of_model(predicted):
    first, *others = [(predicted[kind] / "predictions.tsv").read_text() for kind in KINDS]
    assert all(other == first for other in others)


def test_predict_on_squad_json_without_answers_writes_predictions_and_no_metrics(tmp_path, minilm_dir):
    """A SQuAD head from a checkpoint on questions without answers: predictions.json in the official layout."""
    import tensorflow as tf

    from bert_trainer.finetune.classifier import BertSpanHead
    from bert_trainer.model import BertConfig

    tf.train.Checkpoint(model=BertSpanHead(BertConfig.from_dict(SMALL))).write(str(tmp_path / "run" / "ckpt-1"))
    context = "The cat sat on the mat. The dog slept in the sun all afternoon."
    (tmp_path / "q.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "Where did the cat sit?", "answers": []},
        {"id": "q2", "question": "Who slept?", "answers": []}]}]}]}))
    assert cli.main(["predict", "--model", str(tmp_path / "run" / "ckpt-1"), "--task_name", "squad", "--predict_file",
                     str(tmp_path / "q.json"), "--output_dir", str(tmp_path / "out"), "--bert_config_json",
                     json.dumps(SMALL), "--vocab_file", str(minilm_dir / "vocab.txt"), "--do_lower_case",
                     "--max_seq_length", "32", "--doc_stride", "8", "--max_query_length", "8"]) == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted(predictions) == ["q1", "q2"] and all(p and p in context for p in predictions.values())
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize(("change", "flag"), [
    (lambda a, t: a.__setitem__(a.index("--model") + 1, str(t / "nowhere")), "--model"),
    (lambda a, t: a.__setitem__(a.index("--task_name") + 1, "squad"), "--model"),  # a classifier, not a span head
    (lambda a, t: a.__setitem__(a.index("--task_name") + 1, "MNLI"), "--model"),  # 2 labels, MNLI has 3
    (lambda a, t: a.__setitem__(a.index("--predict_file") + 1, str(t / "absent.tsv")), "--predict_file"),
    (lambda a, t: a.__setitem__(a.index("--predict_file") + 1, str(t / "dev.json")), "--predict_file"),
    (lambda a, t: a.extend(["--bert_model", "base"]), "--bert_model"),  # a folder has its own config
    (lambda a, t: a.extend(["--max_seq_length", "4096"]), "--max_seq_length"),
    (lambda a, t: a.extend(["--predict_batch_size", "0"]), "--predict_batch_size"),
    (lambda a, t: a.extend(["--vocab_file", str(t / "absent.txt")]), "--vocab_file"),
    (lambda a, t: a.extend(["--version_2_with_negative"]), "--version_2_with_negative"),
    (lambda a, t: a.__setitem__(a.index("--task_name") + 1, "QQP"), "--task_name"),
])
def test_bad_predict_flags_exit_2_naming_the_flag(tmp_path, capsys, change, flag):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**SMALL, "architectures": ["BertForSequenceClassification"],
                                                    "id2label": {"0": "LABEL_0", "1": "LABEL_1"}}))
    (folder / "model.safetensors").write_bytes(b"")  # never read: the flags fail first
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    (tmp_path / "dev.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n")
    args = ["--model", str(folder), "--task_name", "MRPC", "--predict_file", str(tmp_path / "dev.tsv"), "--output_dir",
            str(tmp_path / "out")]
    change(args, tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", *args])
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_needs_the_model_flags_and_a_vocab_and_fails_before_tensorflow_loads(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt-1.index").write_bytes(b"")
    (tmp_path / "dev.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n")
    code = ("import sys; from bert_trainer.cli import main\n"
            "try: main(sys.argv[1:])\n"
            "except SystemExit as e: print(e.code, 'tensorflow' in sys.modules)")
    base = [sys.executable, "-c", code, "predict", "--model", str(tmp_path / "run"), "--task_name", "MRPC",
            "--predict_file", str(tmp_path / "dev.tsv"), "--output_dir", str(tmp_path / "out")]
    for extra, flag in (([], "--model"), (["--bert_model", "base"], "--vocab_file")):
        result = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert result.stdout.split() == ["2", "False"], result.stderr
        assert flag in result.stderr.splitlines()[-1]


def test_export_formats_flag_is_checked_before_tensorflow_loads(tmp_path, minilm_dir):
    code = ("import sys; from bert_trainer.cli import main\n"
            "try: main(sys.argv[1:])\n"
            "except SystemExit as e: print(e.code, 'tensorflow' in sys.modules)")
    (tmp_path / "MRPC").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "MRPC" / f"{split}.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n")
    common = ["--vocab_file", str(minilm_dir / "vocab.txt"), "--bert_config_json", json.dumps(SMALL),
              "--output_dir", str(tmp_path / "out")]
    for task, extra, message in (
        ("glue", ["--task_name", "MRPC", "--data_dir", str(tmp_path / "MRPC"), "--export_formats", "hf,onnx"],
         "--export_formats: unknown format 'onnx'"),
        ("glue", ["--task_name", "MRPC", "--data_dir", str(tmp_path / "MRPC"), "--do_eval", "--export_formats", "hf"],
         "--export_formats: exports what this run trains"),
        ("squad", ["--train_file", str(tmp_path / "MRPC" / "dev.tsv"), "--do_train", "--export_formats", "savedmodel,"
                   "torch"], "--export_formats: unknown format 'torch'"),
    ):
        result = subprocess.run([sys.executable, "-c", code, task, *extra, *common], capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.split() == ["2", "False"], result.stderr
        assert message in result.stderr


def test_no_export_formats_means_no_export_folder_and_an_empty_list(tmp_path, minilm_dir):
    """An old command line (no --export_formats): nothing exported, results.json says so."""
    (tmp_path / "MRPC").mkdir()
    slice_tsv(DATA / "mrpc" / "train.tsv", tmp_path / "MRPC" / "train.tsv", 16)
    slice_tsv(DATA / "mrpc" / "dev.tsv", tmp_path / "MRPC" / "dev.tsv", 8)
    tiny = {**SMALL, "num_hidden_layers": 1}
    assert cli.main(["glue", "--task_name", "MRPC", "--data_dir", str(tmp_path / "MRPC"), "--vocab_file",
                     str(minilm_dir / "vocab.txt"), "--bert_config_json", json.dumps(tiny), "--output_dir",
                     str(tmp_path / "out"), "--max_seq_length", "32", "--train_batch_size", "8",
                     "--num_train_epochs", "1"]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["exported"] == []
    assert not (tmp_path / "out" / "export").exists()
    assert np.isfinite(json.loads((tmp_path / "out" / "results.json").read_text())["finalLoss"])


def test_a_squad_run_exports_a_savedmodel_that_predict_scores_as_the_run_did(tmp_path, minilm_dir):
    """A small SQuAD head trained and scored on two real dev paragraphs, exported as a SavedModel: predict on it
    gives the run's own predictions.json, answer for answer, and its scores."""
    dev = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    article = dev["data"][0]
    (tmp_path / "slice.json").write_text(json.dumps({"version": "1.1", "data": [
        {**article, "paragraphs": article["paragraphs"][:2]}]}))
    window = ["--max_seq_length", "64", "--doc_stride", "32", "--max_query_length", "16"]
    assert cli.main(["squad", "--train_file", str(tmp_path / "slice.json"), "--predict_file", str(tmp_path / "slice.json"),
                     "--do_train", "--do_predict", "--vocab_file", str(minilm_dir / "vocab.txt"), "--do_lower_case",
                     "--bert_config_json", json.dumps({**SMALL, "num_hidden_layers": 1}), "--output_dir",
                     str(tmp_path / "run"), "--train_batch_size", "8", "--num_train_epochs", "1",
                     "--learning_rate", "1e-3", "--export_formats", "savedmodel", *window]) == 0
    run = json.loads((tmp_path / "run" / "results.json").read_text())
    assert run["exported"] == ["savedmodel"] and not (tmp_path / "run" / "export" / "hf").exists()
    assert cli.main(["predict", "--model", str(tmp_path / "run" / "export" / "savedmodel"), "--task_name", "squad",
                     "--predict_file", str(tmp_path / "slice.json"), "--output_dir", str(tmp_path / "out"),
                     *window]) == 0
    ours = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert ours == json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert len(ours) == sum(len(p["qas"]) for p in article["paragraphs"][:2]) and any(ours.values())
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"] == run["predict"]
