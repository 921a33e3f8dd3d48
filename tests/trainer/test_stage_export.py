"""--export_formats at the end of a pretraining stage: an export that cannot be written fails the run (exit 1, no
results.json) after the final checkpoint; the rerun, which has nothing left to train, still exports, and both
exports hold the final checkpoint's weights."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from bert_trainer.model import BertConfig, BertPretrainer
from bert_trainer.model.importer import load_safetensors, load_tf_checkpoint
from bert_trainer.model.savedmodel_export import load_serving

from conftest import SEQ, TINY, tiny_flags


def test_a_failed_export_fails_the_run_and_the_finished_rerun_still_exports(run_cli, records, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "export").write_text("a file where the export folder goes")
    flags = tiny_flags(records, str(out), steps=4, save=4) + ["--export_formats", "hf,savedmodel"]
    failed = run_cli(flags)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "error: export hf to " in failed.stderr and "failed" in failed.stderr
    assert (out / "checkpoints" / "ckpt-4.index").is_file()  # trained and checkpointed first
    assert not (out / "results.json").exists()  # no success reported

    (out / "export").unlink()
    rerun = run_cli(flags)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["exported"] == ["hf", "savedmodel"] and results["steps"] == 4
    assert results["resumedFromStep"] == 4  # nothing left to train: the export alone
    hf = out / "export" / "hf"
    assert sorted(p.name for p in hf.iterdir()) == ["config.json", "model.safetensors"]  # pretrain has no vocab
    assert json.loads((hf / "config.json").read_text())["architectures"] == ["BertForPreTraining"]

    cfg = BertConfig.from_dict(TINY)
    final = BertPretrainer(cfg, seed=99)
    load_tf_checkpoint(final, str(out / "checkpoints" / "ckpt-4"))
    from_hf = BertPretrainer(cfg, seed=98)
    report = load_safetensors(from_hf, str(hf / "model.safetensors"))
    assert (report.missing, report.unused) == ([], [])
    for name, var in final.named_variables().items():
        np.testing.assert_array_equal(from_hf.named_variables()[name].numpy(), var.numpy(), err_msg=name)

    _, serve, arch = load_serving(str(out / "export" / "savedmodel"))
    assert arch == "BertForPreTraining"
    rng = np.random.default_rng(0)
    x = {"input_ids": rng.integers(5, TINY["vocab_size"], (2, SEQ), dtype=np.int32),
         "input_mask": np.ones((2, SEQ), np.int32), "segment_ids": np.zeros((2, SEQ), np.int32)}
    served = serve(**{k: tf.constant(v) for k, v in x.items()})
    expected = final({**x, "masked_lm_positions": np.tile(np.arange(SEQ, dtype=np.int32), (2, 1))})
    for name in ("mlm_logits", "nsp_logits"):
        assert np.max(np.abs(served[name].numpy() - expected[name].numpy())) < 1e-5, name
