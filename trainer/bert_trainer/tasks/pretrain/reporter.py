"""What a user (and the operator) sees of a pretraining run: progress.json every few
steps and results.json at the end (both through :class:`bert_trainer.reports.ReportWriter`,
the writer every task shares), and around them the pretraining-only parts: TensorBoard
event files, the loss history and its PNG.

Only rank 0 builds a Reporter; the others get ``NullReporter`` so no two processes
ever write the same object.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import tensorflow as tf

from bert_trainer import storage
from bert_trainer.reports import ReportWriter
from bert_trainer.tasks.pretrain.events import purge_after

log = logging.getLogger(__name__)


class NullReporter:
    """The reporter of non-chief ranks: accepts everything, writes nothing."""

    def record(self, step: int, metrics: dict[str, float], sequences_per_second: float) -> None: ...
    def flush(self, step: int) -> None: ...
    def upload_tensorboard(self) -> None: ...
    def finish(self, results: dict[str, Any]) -> dict[str, Any]:
        return results


class Reporter:
    """Writes progress under ``output_dir`` (local or s3://), for a run that starts at `start_step`."""

    def __init__(self, output_dir: str, total_steps: int, scratch_dir: str, every_steps: int = 10,
                 start_step: int = 0) -> None:
        self.output_dir = output_dir
        self.total_steps = int(total_steps)
        self.every_steps = max(int(every_steps), 1)
        self.tb_local = (storage.join(output_dir, "tensorboard") if not storage.is_s3(output_dir)
                         else os.path.join(scratch_dir, "tensorboard"))
        os.makedirs(self.tb_local, exist_ok=True)
        # Steps after start_step are logged again by this run: drop an earlier run's, before ours are written.
        purge_after(start_step, self.tb_local,
                    storage.join(output_dir, "tensorboard") if storage.is_s3(output_dir) else None)
        self.writer = tf.summary.create_file_writer(self.tb_local)
        self.history: list[list[float]] = self._load_history()
        self.last: dict[str, Any] = {}
        self.reports = ReportWriter(output_dir, chief=True)

    def _load_history(self) -> list[list[float]]:
        """Keep the loss curve whole across restarts: reload the previous run's points.

        A history that cannot be parsed is not dropped silently (the next flush would replace
        it, losing the earlier points for good): it is copied aside to
        ``history.json.corrupt-<UTC time>`` and named in an ``event=history_unreadable`` warning.
        A store that cannot be read is a StorageError (exit 1), for the same reason.
        """
        uri = storage.join(self.output_dir, "history.json")
        data = storage.read_if_exists(uri)
        if data is None:
            return []
        try:
            points = json.loads(data)
            if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
                raise ValueError("not a list of [step, loss] points")
            return [[int(step), float(loss)] for step, loss in points]
        except (ValueError, TypeError) as exc:
            aside = f"{uri}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            storage.write_bytes(aside, data)
            log.warning("event=history_unreadable uri=%s kept=%s reason=%s; the loss curve restarts from this run",
                        uri, aside, str(exc).splitlines()[0][:200])
            return []

    def record(self, step: int, metrics: dict[str, float], sequences_per_second: float) -> None:
        """Log one optimizer step; every ``every_steps`` steps publish progress.json."""
        with self.writer.as_default(step=step):
            for key, value in metrics.items():
                tf.summary.scalar(f"train/{key}", value)
            tf.summary.scalar("train/sequences_per_second", sequences_per_second)
        self.history = [h for h in self.history if h[0] < step]
        self.history.append([step, float(metrics["loss"])])
        remaining = max(self.total_steps - step, 0)
        steps_per_second = metrics.get("steps_per_second", 0.0)
        self.last = {
            "step": int(step),
            "totalSteps": self.total_steps,
            "loss": round(float(metrics["loss"]), 6),
            "mlmAccuracy": round(float(metrics["mlm_accuracy"]), 6),
            "nspAccuracy": round(float(metrics["nsp_accuracy"]), 6),
            "sequencesPerSecond": round(float(sequences_per_second), 3),
            "etaSeconds": round(remaining / steps_per_second, 1) if steps_per_second > 0 else None,
        }
        if step % self.every_steps == 0 or step == self.total_steps:
            self.flush(step)

    def flush(self, step: int) -> None:
        if not self.last:
            return
        self.reports.progress(self.last, final=step == self.total_steps)
        storage.write_bytes(storage.join(self.output_dir, "history.json"), json.dumps(self.history).encode())

    def upload_tensorboard(self) -> None:
        self.writer.flush()
        if storage.is_s3(self.output_dir):
            for entry in storage.list_files(self.tb_local):
                storage.upload_file(entry.uri, storage.join(self.output_dir, "tensorboard", entry.relpath))

    def _plot(self) -> str | None:
        if not self.history:
            return None
        import matplotlib  # noqa: PLC0415 - heavy, only at the end

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        steps, losses = zip(*self.history)
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        ax.plot(steps, losses, color="tab:blue", linewidth=1.2)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (MLM + NSP)")
        ax.set_title("BERT pretraining loss")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        local = os.path.join(self.tb_local, "..", "loss_curve.png") if not storage.is_s3(self.output_dir) \
            else os.path.join(self.tb_local, "loss_curve.png")
        fig.savefig(local)
        plt.close(fig)
        uri = storage.join(self.output_dir, "loss_curve.png")
        if storage.is_s3(self.output_dir):
            storage.upload_file(local, uri)
            os.remove(local)
        return uri

    def finish(self, results: dict[str, Any]) -> dict[str, Any]:
        """Final progress, results.json, TensorBoard upload and the loss plot."""
        if self.last:
            self.flush(self.last["step"])
        results = dict(results)
        results["lossCurve"] = self._plot()
        results["tensorboard"] = storage.join(self.output_dir, "tensorboard")
        self.upload_tensorboard()
        return self.reports.results(results)


def create_reporter(is_chief: bool, output_dir: str, total_steps: int, scratch_dir: str, every_steps: int,
                    start_step: int = 0) -> Reporter | NullReporter:
    return Reporter(output_dir, total_steps, scratch_dir, every_steps, start_step) if is_chief else NullReporter()
