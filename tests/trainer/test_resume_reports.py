"""What a resumed pretraining run leaves for TensorBoard and the loss curve (issue 13 E3b, E3c):
each step once in the event files, and an unreadable history.json kept aside and named."""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

import pytest
import tensorflow as tf

from bert_trainer import storage
from conftest import tiny_flags


def logged_steps(folder: Path, tag: str = "train/loss") -> list[int]:
    """Every step at which `tag` was written, over all event files, read back as TensorBoard reads them."""
    steps = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def test_a_resumed_run_logs_each_step_once_in_tensorboard(run_cli, records, tmp_path):
    out = tmp_path / "out"
    flags = tiny_flags(records, str(out), steps=20, save=10)
    first = run_cli(flags)
    assert first.returncode == 0, first.stderr[-3000:]
    assert logged_steps(out / "tensorboard") == list(range(1, 21))
    # The newest checkpoint is lost (never published, say): the rerun resumes at 10 and logs 11..20 again.
    for path in (out / "checkpoints").glob("ckpt-20.*"):
        path.unlink()
    rerun = run_cli(flags)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "event=resumed step=10" in rerun.stderr
    steps = logged_steps(out / "tensorboard")
    twice = [step for step, n in collections.Counter(steps).items() if n > 1]
    assert not twice, f"steps logged twice: {twice}"
    assert "event=tensorboard_purged after_step=10 events=" in rerun.stderr
    assert sorted(steps) == list(range(1, 21))
    assert [s for s, _ in json.loads((out / "history.json").read_text())] == list(range(1, 21))


def test_a_truncated_event_file_is_cut_at_its_last_whole_record(tmp_path: Path) -> None:
    from bert_trainer.tasks.pretrain.events import drop_steps_after

    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step in range(1, 6):
            tf.summary.scalar("train/loss", float(step), step=step)
    writer.close()
    path = next(tmp_path.glob("events.out.tfevents.*"))
    path.write_bytes(path.read_bytes()[:-7])  # killed in the middle of the last record
    assert drop_steps_after(str(path), 3) == 2  # step 4, and what is left of step 5
    assert logged_steps(tmp_path) == [1, 2, 3]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_unreadable_history_is_kept_aside_and_named(where, tmp_path, caplog, request):
    from bert_trainer.tasks.pretrain.reporter import Reporter

    if where == "s3":
        request.getfixturevalue("s3_env")
        output = f"s3://{request.getfixturevalue('bucket')}/run"
    else:
        output = str(tmp_path / "out")
    garbage = b'[[1, 6.9], [2, 6.'  # a history cut short
    storage.write_bytes(storage.join(output, "history.json"), garbage)
    with caplog.at_level(logging.WARNING):
        reporter = Reporter(output, total_steps=10, scratch_dir=str(tmp_path / "scratch"))
    assert reporter.history == []
    line = next(r.getMessage() for r in caplog.records if "event=history_unreadable" in r.getMessage())
    aside = line.split("kept=")[1].split()[0]
    assert f"uri={storage.join(output, 'history.json')} " in line and ".corrupt-" in aside
    assert storage.read_bytes(aside) == garbage  # the earlier points are still there for whoever wants them
