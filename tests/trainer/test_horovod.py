"""Two Horovod processes on localhost (gloo) train like one process on the same
global batch, and end with identical weights. Skipped when Horovod is not built
(scripts/build-horovod.sh builds it; CI does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_flags

try:
    import horovod.tensorflow  # noqa: F401

    HOROVOD = True
except Exception as exc:  # ImportError, or a build/ABI mismatch against this TensorFlow
    HOROVOD, WHY = False, f"horovod.tensorflow not importable ({exc}); run scripts/build-horovod.sh"

pytestmark = pytest.mark.skipif(not HOROVOD, reason=WHY if not HOROVOD else "")

WORKER = Path(__file__).with_name("hvd_worker.py")


def horovodrun() -> list[str]:
    exe = shutil.which("horovodrun") or str(Path(sys.executable).with_name("horovodrun"))
    return [exe, "--gloo", "-np", "2", "-H", "localhost:2"]


def run(cmd: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def one_process_weights():
    """The 1-process reference on the same global batches, computed in this process."""
    from bert_trainer.dist import SingleProcess
    from hvd_worker import train

    return train(SingleProcess(), steps=3, k=2, global_batch=16, per_micro_batch_allreduce=False)


@pytest.mark.parametrize("per_micro_batch", [False, True], ids=["allreduce_post_accumulation", "per_micro_batch"])
def test_two_ranks_identical_and_match_one_process(tmp_path, per_micro_batch, one_process_weights):
    extra = ["--per_micro_batch_allreduce"] if per_micro_batch else []
    run(horovodrun() + [sys.executable, str(WORKER), "--horovod", "--out", str(tmp_path / "hvd")] + extra, tmp_path)
    r0, r1 = load(tmp_path / "hvd" / "rank0.npz"), load(tmp_path / "hvd" / "rank1.npz")
    single = one_process_weights
    for name in r0:
        assert np.array_equal(r0[name], r1[name]), f"{name} differs between ranks"
        np.testing.assert_allclose(r0[name], single[name], rtol=1e-4, atol=2e-5, err_msg=name)


def test_cli_pretrain_under_horovodrun_only_rank0_writes(tmp_path, records):
    out = tmp_path / "out"
    flags = tiny_flags(records, str(out), steps=10, save=5)
    proc = run(horovodrun() + [sys.executable, "-m", "bert_trainer"] + flags[:1] + ["--horovod"] + flags[1:], tmp_path)
    results = json.loads((out / "results.json").read_text())
    assert results["worldSize"] == 2 and results["globalBatchSize"] == 32 and results["steps"] == 10
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "ckpt-10.data-00000-of-00001", "ckpt-10.index", "ckpt-10.manifest.json",
        "ckpt-5.data-00000-of-00001", "ckpt-5.index", "ckpt-5.manifest.json"]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one writer: rank 0
    assert "rank=1 size=2" in proc.stdout + proc.stderr


def test_cli_glue_under_horovodrun_accumulates_and_only_rank0_writes(tmp_path, repo):
    """Fine-tuning runs the pretraining engine under Horovod too: 2 ranks x 2 micro-batches of 8 a step; with
    --print_metrics rank 0 alone prints the dev metrics as name=value lines (what Katib's StdOut collector reads)."""
    tiny = repo / "examples" / "tiny"
    config = {"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64}
    out = tmp_path / "out"
    done = run(horovodrun() + [sys.executable, "-m", "bert_trainer", "glue", "--horovod", "--task_name", "CoLA",
                               "--data_dir", str(tiny / "CoLA"), "--vocab_file", str(tiny / "vocab.txt"),
                               "--do_lower_case", "--bert_config_json", json.dumps(config), "--output_dir", str(out),
                               "--max_seq_length", "32", "--train_batch_size", "8", "--num_accumulation_steps", "2",
                               "--num_train_epochs", "1", "--learning_rate", "3e-4", "--print_metrics"], tmp_path)
    results = json.loads((out / "results.json").read_text())
    printed = [line.rsplit(":", 1)[-1].strip() for line in done.stdout.splitlines() if "mcc=" in line]  # ([1,0]<stdout>:)
    assert printed == [f"mcc={results['dev']['mcc']:.6g}"]  # once: rank 0's
    assert results["steps"] == 63  # ceil(2000 / (8 x 2 x 2))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "ckpt-63.data-00000-of-00001", "ckpt-63.index", "ckpt-63.manifest.json"]
    assert "mcc" in results["dev"]
