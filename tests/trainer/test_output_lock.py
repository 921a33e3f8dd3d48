"""One writer per output (issue 13 E1b): a second trainer on an output that a running trainer
holds exits 2 naming --output_dir and the holder, on a local folder (flock) and on a moto bucket
(lease object); a lease that expired, whose holder stopped renewing, or whose holder is gone is
taken over; a holder whose lease was taken over finds out at its next renewal."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from bert_trainer import storage
from conftest import tiny_flags

LONG = 100_000  # steps: the first trainer is stopped by the test, never by its end


class Running:
    """A trainer started in the background, its output drained by a thread (so it never blocks on a
    full pipe) and kept for the test; `wait_for` returns once a line contains the marker."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.seen = threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-m", "bert_trainer", *args], cwd=cwd, text=True,
                                        env={**os.environ, **(env or {}), "TF_CPP_MIN_LOG_LEVEL": "2"},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.seen:
                self.lines.append(line)
                self.seen.notify_all()
        with self.seen:
            self.seen.notify_all()

    def wait_for(self, marker: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        with self.seen:
            while not any(marker in line for line in self.lines):
                left = deadline - time.monotonic()
                if self.process.poll() is not None or left <= 0:
                    pytest.fail(f"no {marker!r} (status {self.process.poll()}):\n{''.join(self.lines)[-3000:]}")
                self.seen.wait(min(left, 1.0))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def assert_refused(proc: subprocess.CompletedProcess, holder_pid: int) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--output_dir" in proc.stderr and "is being written by another run" in proc.stderr
    assert f"pid {holder_pid} on" in proc.stderr and "Traceback" not in proc.stderr


def test_a_second_trainer_on_a_held_local_output_exits_2(run_cli, records, tmp_path):
    out = tmp_path / "out"
    first = Running(tiny_flags(records, str(out), steps=LONG, save=LONG), tmp_path)
    try:
        first.wait_for("event=train_start")
        second = run_cli(tiny_flags(records, str(out), steps=5, save=5))
        assert_refused(second, first.process.pid)
        assert first.process.poll() is None  # the holder was not disturbed
    finally:
        assert first.stop() == 143
    assert not (out / "checkpoints" / "ckpt-5.index").exists()  # the second wrote nothing
    again = run_cli(tiny_flags(records, str(out), steps=5, save=5))  # the kernel released the lock with its holder
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_second_trainer_on_a_held_bucket_output_exits_2(run_cli, records, tmp_path, s3_env, bucket):
    out = f"s3://{bucket}/run"
    lease = f"{out}/.lease.json"
    first = Running(tiny_flags(records, out, steps=LONG, save=LONG) + ["--local_dir", str(tmp_path / "s1")],
                    tmp_path, s3_env)
    try:
        first.wait_for("event=train_start")
        held = json.loads(storage.read_bytes(lease))
        assert held["pid"] == first.process.pid and held["task"] == "pretrain"
        second = run_cli(tiny_flags(records, out, steps=5, save=5) + ["--local_dir", str(tmp_path / "s2")], env=s3_env)
        assert_refused(second, first.process.pid)
        assert lease in second.stderr and held["runId"] in second.stderr
    finally:
        assert first.stop() == 143
    assert storage.read_if_exists(lease) is None  # released on the way out


def put_lease(bucket: str, env: dict[str, str], holder) -> None:
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"]).put_object(
        Bucket=bucket, Key="run/.lease.json", Body=holder.to_json())


def elsewhere(**changes):
    """A holder on another machine (its pids are not ours to check)."""
    from bert_trainer import output_lock

    return dataclasses.replace(output_lock.Holder.me("pretrain"), host="other-pod", machine="another-boot/pid:[1]",
                               pid=4242, **changes)


@pytest.mark.parametrize("case", ["expired", "holder_gone"])
def test_a_stale_lease_is_taken_over(case, run_cli, records, tmp_path, s3_env, bucket):
    from bert_trainer import output_lock

    if case == "expired":
        holder = elsewhere(ttl_seconds=0.0)
    else:  # this machine, a pid that has exited
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        holder = dataclasses.replace(output_lock.Holder.me("pretrain"), pid=int(ended.stdout))
    put_lease(bucket, s3_env, holder)
    proc = run_cli(tiny_flags(records, f"s3://{bucket}/run", steps=2, save=2) + ["--local_dir", str(tmp_path / "s")],
                   env=s3_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stderr.splitlines() if "event=lease_taken_over" in line)
    assert f"reason={case}" in line and holder.run_id in line
    assert storage.read_if_exists(f"s3://{bucket}/run/.lease.json") is None


def test_a_lease_whose_holder_stopped_renewing_is_waited_for_then_taken_over(s3_env, bucket, caplog):
    """Renewed longer ago than two renewal periods: its holder is likely gone (a pod killed and replaced), so
    the newcomer waits for the expiry instead of failing (ttl 4 s: the wait is seen unless this stalls 4 s)."""
    from bert_trainer import output_lock

    stalled = elsewhere(ttl_seconds=4.0, renew_seconds=0.0)
    put_lease(bucket, s3_env, stalled)
    with caplog.at_level("INFO", logger="bert_trainer.output_lock"):
        lease = output_lock.S3Lease(f"s3://{bucket}/run", output_lock.Holder.me("pretrain"), on_lost=pytest.fail)
    try:
        assert "event=lease_wait" in caplog.text and stalled.run_id in caplog.text
        assert "event=lease_taken_over" in caplog.text and "reason=expired" in caplog.text
        assert json.loads(storage.read_bytes(lease.uri))["runId"] == lease.me.run_id
    finally:
        lease.release()


def test_a_live_lease_elsewhere_is_refused(run_cli, records, tmp_path, s3_env, bucket):
    put_lease(bucket, s3_env, elsewhere())
    proc = run_cli(tiny_flags(records, f"s3://{bucket}/run", steps=2, save=2), env=s3_env)
    assert_refused(proc, 4242)
    assert "other-pod" in proc.stderr


def test_a_holder_finds_out_at_its_next_renewal_that_its_lease_was_taken(s3_env, bucket):
    from bert_trainer import output_lock

    lost: list[str] = []
    lease = output_lock.S3Lease(f"s3://{bucket}/run", output_lock.Holder.me("pretrain"), on_lost=lost.append)
    try:
        assert lease.renew() and not lost  # ours: renewed
        put_lease(bucket, s3_env, elsewhere())  # another run took it over (we stopped renewing for a whole TTL)
        assert not lease.renew()
        assert lost and "other-pod" in lost[0]
    finally:
        lease.release()
    assert b"other-pod" in storage.read_bytes(f"s3://{bucket}/run/.lease.json")  # theirs is left alone


def test_prepare_data_refuses_an_output_another_run_holds(run_cli, tmp_path, minilm_dir):
    from bert_trainer import output_lock

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "book.txt").write_text("A book. It has two sentences.\n\nAnd a second paragraph here.\n")
    out = tmp_path / "out"
    held = output_lock.acquire(str(out), "another run")
    try:
        proc = run_cli(["prepare-data", "--input_dir", str(tmp_path / "in"), "--output_dir", str(out), "--vocab_file",
                        str(minilm_dir / "vocab.txt"), "--n_shards", "1", "--test_split", "0", "--num_workers", "1"])
    finally:
        held.release()
    assert_refused(proc, os.getpid())
    assert not (out / "training").exists() and not (out / "progress.json").exists()
