"""The MPIJobs of a local run, each run as processes on this machine.

`LocalStages` stands where the API server and the MPI Operator stand for the
operator: the same :class:`~bert_operator.reconcile.Reconciler` creates
MPIJobs through it, reads their conditions back and writes the job's status
to it. Each MPIJob it is given runs as its pods would: the worker's init
container (the dataset sync) first, then the launcher's command. Its
conditions are written in the MPI Operator's shape (Created, Running,
Succeeded, Failed with MPIJob* reasons), so the operator's phase machine
needs no local special case.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bert_common.contract import utc_now
from .commands import LocalCommand, container_command, ignored_locally, launcher_command, sync_commands
from .lifetime import die_with_parent
from .volumes import VolumeMap
from .. import reasons
from ..reconcile.ports import Rejected

log = logging.getLogger(__name__)

#: Seconds a stopped stage gets to checkpoint before it is killed.
STOP_GRACE_SECONDS = 60.0


@dataclass
class StageRun:
    """One MPIJob and the process running it now."""

    mpijob: dict[str, Any]
    log_path: Path
    process: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    stopping: bool = False


class LocalStages:
    """Runs the MPIJobs the reconciler creates; keeps the job's status in `<job_dir>/status.json`."""

    def __init__(self, job_dir: Path, volumes: VolumeMap, status: dict[str, Any], *,
                 processes: int | None = None) -> None:
        self.job_dir = job_dir
        self.volumes = volumes
        self.status = status
        self.processes = processes
        self.runs: dict[str, StageRun] = {}
        #: batch/v1 Jobs (a sweep's cleanup), each one process; StageRun.mpijob holds the Job.
        self.jobs: dict[str, StageRun] = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()

    # ------------------------------------------------ the reconciler's MPIJobApi

    def get_mpijob(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            run = self.runs.get(name)
            return copy.deepcopy(run.mpijob) if run else None

    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = body["metadata"]["name"]
        with self.lock:
            if name in self.runs:
                return copy.deepcopy(self.runs[name].mpijob), False
            mpijob = copy.deepcopy(body)
            mpijob["metadata"]["uid"] = str(uuid.uuid4())  # as the API server gives every object
            mpijob["status"] = {"conditions": []}
            run = StageRun(mpijob, self.job_dir / f"{name}.log")
            self.runs[name] = run
        self._condition(run, "Created", reasons.MPIJOB_CREATED, f"MPIJob {name} created (local processes)")
        if not (mpijob["spec"].get("runPolicy") or {}).get("suspend"):
            self._start(run)
        else:
            self._condition(run, "Suspended", "MPIJobSuspended", "runPolicy.suspend is true; nothing runs")
        return self.get_mpijob(mpijob["metadata"].get("namespace", "default"), name) or mpijob, True

    def patch_mpijob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """The reconciler patches an MPIJob only to pass a changed runPolicy.suspend on. A local run's
        spec is fixed for the whole run (a suspended job is rendered suspended and never starts), so
        this cannot happen here; say so rather than pretend to apply it."""
        raise NotImplementedError(f"MPIJob {namespace}/{name}: a local run's spec does not change while it runs")

    def delete_mpijob(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        """The reconciler deletes only a stage that failed for an infrastructure reason, which local processes do
        not report (their failures are the job's own, or an interrupt); a finished stage has no process left."""
        with self.lock:
            run = self.runs.get(name)
            if run is not None and (run.mpijob.get("metadata") or {}).get("uid") == uid:
                del self.runs[name]
        return None

    def list_stage_pods(self, namespace: str, job: str, stage: str) -> list[dict[str, Any]]:
        """No pods here; a failed local stage is judged by its condition (the exit code and error line)."""
        return []

    def find_workload(self, namespace: str, mpijob_uid: str) -> dict[str, Any] | None:
        """No Kueue here (a local run drops queueName)."""
        return None

    def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"Workload {namespace}/{name}: there is no Kueue in a local run")

    def list_warning_events(self, namespace: str) -> list[dict[str, Any]]:
        """Local processes start at once or fail with their log: nothing waits for a scheduler."""
        return []

    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """No KServe here: spec.serve is the cluster's; `bertjob serve --local` serves a local run's model."""
        return None

    def create_inference_service(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        raise Rejected(501, "a local run makes no InferenceService: serve its model with `bertjob serve --local FILE "
                            "--job NAME`")

    def patch_inference_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"InferenceService {namespace}/{name}: there is no KServe in a local run")

    def delete_inference_service(self, namespace: str, name: str, uid: str) -> None:
        """Nothing was made."""

    def get_batch_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            run = self.jobs.get(name)
            return copy.deepcopy(run.mpijob) if run else None

    def create_batch_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Run the Job's one container as a process, as its pod would; its end in the Job controller's conditions."""
        name = body["metadata"]["name"]
        with self.lock:
            if name in self.jobs:
                return copy.deepcopy(self.jobs[name].mpijob), False
            job = copy.deepcopy(body)
            job["metadata"]["uid"] = str(uuid.uuid4())
            job["status"] = {"startTime": utc_now(), "active": 1}
            run = StageRun(job, self.job_dir / f"{name}.log")
            self.jobs[name] = run
        run.thread = threading.Thread(target=self._run_batch_job, args=(run,), daemon=True, name=name)
        run.thread.start()
        return self.get_batch_job(job["metadata"].get("namespace", "default"), name) or job, True

    def _run_batch_job(self, run: StageRun) -> None:
        pod = run.mpijob["spec"]["template"]["spec"]
        try:
            command = container_command(pod["containers"][0], self.volumes.pod_mounts([pod]))
        except ValueError as exc:
            self._job_ended(run, "Failed", "PodFailed", str(exc))
            return
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        code = self._execute(run, command)
        if code == 0:
            self._job_ended(run, "Complete", "", "")
        else:
            self._job_ended(run, "Failed", "BackoffLimitExceeded",
                            f"{command.role} exited with code {code}: {last_error(run.log_path)}")

    def _job_ended(self, run: StageRun, kind: str, reason: str, message: str) -> None:
        """The Job controller's terminal condition (Complete or Failed) and counts."""
        now = utc_now()
        with self.lock:
            condition = {"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                         **({"reason": reason, "message": message} if reason else {})}
            run.mpijob["status"] = {**run.mpijob["status"], "active": 0, "conditions": [condition],
                                    ("succeeded" if kind == "Complete" else "failed"): 1,
                                    **({"completionTime": now} if kind == "Complete" else {})}
        self.changed.set()

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """A JSON merge patch of the status, as the API server applies it (null removes a field)."""
        self.status.update({key: value for key, value in status.items() if value is not None})
        for key in [key for key, value in status.items() if value is None]:
            self.status.pop(key, None)
        self.save()
        return {"status": self.status}

    # ---------------------------------------------------------------- running

    def save(self) -> None:
        """status.json, written whole and renamed so a crash never leaves half a file."""
        self.job_dir.mkdir(parents=True, exist_ok=True)
        path = self.job_dir / "status.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.status, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)

    def _condition(self, run: StageRun, kind: str, reason: str, message: str) -> None:
        now = utc_now()
        with self.lock:
            status = run.mpijob["status"]
            conditions = [c for c in status["conditions"] if c["type"] != kind]
            if kind in ("Running", "Succeeded", "Failed", "Suspended"):  # the MPI Operator turns the others off
                for condition in conditions:
                    if condition["type"] in ("Running", "Suspended", "Restarting") and condition["status"] == "True":
                        condition.update(status="False", lastTransitionTime=now)
            conditions.append({"type": kind, "status": "True", "reason": reason, "message": message,
                               "lastTransitionTime": now, "lastUpdateTime": now})
            status["conditions"] = conditions
            if kind == "Running":
                status.setdefault("startTime", now)
            if kind in ("Succeeded", "Failed"):
                status["completionTime"] = now
        self.changed.set()

    def _start(self, run: StageRun) -> None:
        run.thread = threading.Thread(target=self._run, args=(run,), daemon=True, name=run.mpijob["metadata"]["name"])
        run.thread.start()

    def _run(self, run: StageRun) -> None:
        """The pods' work in order: init container(s), then the launcher; the first failure ends the stage."""
        try:
            mounts = self.volumes.mounts(run.mpijob)
            launcher = launcher_command(run.mpijob, mounts, self.processes)
            launcher.notes.extend(ignored_locally(run.mpijob))
            commands = [*sync_commands(run.mpijob, mounts), launcher]
        except ValueError as exc:
            self._condition(run, "Failed", "MPIJobFailed", str(exc))
            return
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        for command in commands:
            if run.stopping:
                return
            if command.role == "launcher":
                self._condition(run, "Running", "MPIJobRunning", f"launcher started (log {run.log_path})")
            code = self._execute(run, command)
            if run.stopping:
                return
            if code != 0:
                self._condition(run, "Failed", "MPIJobFailed",
                                f"{command.role} exited with code {code}: {last_error(run.log_path)}")
                return
        self._condition(run, "Succeeded", "MPIJobSucceeded", f"MPIJob {run.mpijob['metadata']['name']} successfully completed")

    def _execute(self, run: StageRun, command: LocalCommand) -> int:
        with run.log_path.open("a", encoding="utf-8") as log_file:
            log_file.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {command.role}: {shlex.join(command.argv)}\n")
            for note in command.notes:
                log_file.write(f"# note: {note}\n")
            log_file.flush()
            # Its own session: Ctrl-C in the terminal reaches only us; we stop the stage with SIGTERM.
            # And it dies with us (Linux), so a killed `bertjob` leaves no trainer behind: see lifetime.py.
            # This thread waits for the process, as the kernel's parent-death signal requires.
            process = subprocess.Popen(command.argv, env=command.env, cwd=self.job_dir, stdout=log_file,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=die_with_parent())
            run.process = process
            return process.wait()

    def running(self) -> list[StageRun]:
        return [run for run in self.runs.values() if run.thread is not None and run.thread.is_alive()]

    def stop(self, *, now: bool = False) -> None:
        """SIGTERM every running stage (the trainer checkpoints and exits), SIGKILL after the grace period;
        `now` (a second Ctrl-C) kills at once, leaving only the periodic checkpoints."""
        for run in self.running():
            run.stopping = True
            process = run.process
            if process is not None and process.poll() is None:
                if not now:
                    _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=0 if now else STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    _signal_group(process, signal.SIGKILL)
                    process.wait()
            if run.thread is not None:
                run.thread.join()
            message = ("killed on a second Ctrl-C; run again to resume from the last periodic checkpoint" if now
                       else "stopped on request; run again to resume from the last checkpoint")
            self._condition(run, "Failed", reasons.INTERRUPTED, message)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def last_error(log_path: Path, lines: int = 40) -> str:
    """The line of a stage's log that best says why it failed (the trainer's error lines end its output)."""
    try:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return f"see {log_path}"
    interesting = [line for line in tail if line.strip() and not line.startswith("#")]
    for line in reversed(interesting):
        if "error" in line.lower():
            return f"{line.strip()} (log {log_path})"
    return f"{interesting[-1].strip() if interesting else 'no output'} (log {log_path})"
