"""`bertjob run --local`: the jobs of a YAML file, on this machine, each once the jobs it takes inputs from succeeded.

Each job goes through the operator's own :class:`Reconciler` (same
validation, same MPIJobs, same phase machine and status), with
:class:`LocalStages` running the MPIJobs as processes. The trainer's
progress.json and results.json are folded into the status with the
operator's `merge_report`, so the status kept in
`<workdir>/<namespace>/<name>/status.json` (and printed with `-o yaml`) has the
shape `kubectl get btj -o yaml` shows; by default the run ends with a table of
the jobs (summary.py).

Jobs that take inputs from other jobs (spec.dataset.fromJob, model.initCheckpointFrom,
model.vocabFrom) are resolved by the reconciler as on a cluster, from the other jobs'
statuses; the file's order only breaks ties. A job whose producer failed fails with
DependencyFailed and the jobs that do not depend on it still run.

A second run resumes: stages that succeeded are skipped (their status is
kept), a stage that was stopped starts again and the trainer resumes from its
last checkpoint. A changed spec is refused, as the operator refuses it, until
`--fresh` forgets the saved status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..api import BertTrainingJob
from ..api.presets import API_GROUP, API_VERSION, KIND
from ..api.locations import resolved
from ..api.rules import references
from ..api.status import ACCEPTED_SPEC
from bert_common.contract import utc_now
from ..dependencies import cycle_error, producer_names
from ..reconcile import Reconciled, Reconciler, normalized_spec, spec_hash
from ..reconcile.observe import cleans
from ..reconcile.status_view import TRIAL_CLEANUP
from ..render import RenderSettings
from ..render.values import S3_SECRET_KEYS
from ..policy import PolicyInput, parse_policy
from ..progress import MAX_BODY_BYTES, decode_report
from ..reports import merge_report
from ..status import TERMINAL_PHASES, WAITING, condition_of
from ..tasks import report_uri, stages_of, task_of
from ..templates import Overlay
from ..untrusted import mapping, records, text
from .commands import s3_endpoint
from .display import Display
from . import sweep_plot
from .stages import LocalStages
from .volumes import LocalSetupError, VolumeMap, annotated_folder, check_inputs, claim_annotations, volume_map

POLL_SECONDS = 0.5
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class LocalOptions:
    """What `bertjob run --local` was told."""

    workdir: Path
    yaml_dir: Path | None  # the job file's folder; None for standard input (no annotated folders)
    volumes: dict[str, Path] = field(default_factory=dict)
    processes: int | None = None
    fresh: bool = False
    only: tuple[str, ...] = ()
    #: Job templates (--template): applied to every job as a platform's policy would force them.
    templates: tuple[Overlay, ...] = ()
    #: The PodSecurity level the MPIJobs with templates must pass (--pod-security).
    pod_security: str = "restricted"


def template_inputs(templates: tuple[Overlay, ...]) -> dict[str, Any]:
    """The reconciler's templates and policies for --template: the files stand for the platform's catalog, and a
    policy of this run forces them on every job (status.policy says so), as a platform's would on a cluster."""
    if not templates:
        return {}
    names = [overlay.name for overlay in templates]
    policy = parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                           "metadata": {"name": "local-templates"},
                           "spec": {"templates": {"forced": names, "allowed": names}}})
    catalog = {overlay.name: overlay for overlay in templates}
    return {"policies": lambda namespace: PolicyInput({}, (policy,)), "templates": lambda: catalog}


@dataclass
class LocalRun:
    """The outcome of one job."""

    name: str
    phase: str
    status: dict[str, Any]
    outputs: str
    body: dict[str, Any] = field(default_factory=dict)
    #: Where the exported models are (status.results.artifacts), as local mode reads them.
    exports: list[str] = field(default_factory=list)


class Interrupt:
    """Ctrl-C once: stop cleanly (the trainer checkpoints). Twice: give up at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def __enter__(self) -> "Interrupt":
        self.previous = signal.signal(signal.SIGINT, self._first)
        return self

    def _first(self, signum: int, frame: object) -> None:
        self.requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


def check_trainer_installed(job: BertTrainingJob) -> None:
    task = task_of(job.spec)
    missing = [name for name in task.local_modules if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalSetupError(
            f"{job.metadata.name}: a local {task.name} run needs the trainer ({', '.join(missing)} not installed); "
            "install it with: bash scripts/bootstrap.sh local"
        )


def check_credentials(job: BertTrainingJob, environ: Mapping[str, str] = os.environ) -> None:
    """Secrets do not exist locally: the keys a pod would get from them must be in the environment."""
    for field_path, store in (("spec.dataset", job.spec.dataset), ("spec.output", job.spec.output)):
        if not ((store.uri or "").startswith("s3://") and store.credentials_secret):
            continue
        missing = [name for name in S3_SECRET_KEYS if not environ.get(name)]
        if missing:
            raise LocalSetupError(
                f"{field_path}.credentialsSecret: on a cluster {', '.join(missing)} come from Secret "
                f"{store.credentials_secret!r}; for a local run set them in the environment"
            )


def resumable(saved: dict[str, Any]) -> dict[str, Any]:
    """What a rerun keeps of a saved status: everything if it succeeded, else the stages that succeeded."""
    if not saved or saved.get("phase") == "Succeeded":
        return saved
    kept = {key: value for key, value in saved.items() if key not in ("phase", "stages", "completionTime", "currentStage")}
    kept["stages"] = [stage for stage in saved.get("stages") or [] if stage.get("phase") == "Succeeded"]
    return kept


def load_status(job_dir: Path, job: BertTrainingJob, fresh: bool) -> dict[str, Any]:
    path = job_dir / "status.json"
    if fresh or not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LocalSetupError(f"{path}: unreadable saved status ({exc}); run with --fresh to start over") from None
    accepted = saved.get(ACCEPTED_SPEC)
    if accepted and spec_hash(accepted) != spec_hash(normalized_spec(job)):
        raise LocalSetupError(
            f"{job.metadata.name}: the spec changed since the run saved in {path}; fields other than "
            "runPolicy.suspend cannot change once a job started (as on a cluster). Run with --fresh to start "
            "this job over (checkpoints in its output folder are still resumed unless you delete them)"
        )
    return resumable(saved)


class ReportReader:
    """Folds each stage's progress.json and results.json into the status when they change."""

    def __init__(self, job: BertTrainingJob, volumes: VolumeMap) -> None:
        self.job = job
        self.locations = {stage.name: volumes.local_uri(report_uri(job.spec, stage)) for stage in stages_of(job.spec)}
        self.seen: dict[str, bytes] = {}
        self.endpoint = s3_endpoint(job.spec.output.endpoint)  # where the trainer writes them

    def _read(self, uri: str) -> bytes | None:
        from bert_trainer import storage  # noqa: PLC0415 - the trainer package reads local and s3:// alike

        try:
            return storage.read_if_exists(uri, self.endpoint)
        except storage.StorageError:
            return None  # the store is unreachable for now; the next poll tries again

    def fold(self, status: dict[str, Any], stage: str) -> dict[str, Any] | None:
        """The status patch for what changed in `stage`'s reports since the last call, or None."""
        patch: dict[str, Any] = {}
        for name, key in (("progress.json", "progress"), ("results.json", "results")):
            uri = f"{self.locations[stage].rstrip('/')}/{name}"
            data = self._read(uri)
            if data is None or self.seen.get(uri) == data:
                continue
            self.seen[uri] = data
            if len(data) > MAX_BODY_BYTES:
                continue  # no report is this large; the endpoint refuses it too (413)
            try:  # decoded as the endpoint decodes a body: nesting bounded before the recursive decoder sees it
                report = {"stage": stage, key: decode_report(data)}
                patch.update(merge_report(self.job, {**status, **patch}, report, utc_now()))
            except ValueError:
                continue  # a report being rewritten, or one no trainer writes; the next poll reads it again
        return patch or None


def job_body(job: BertTrainingJob, status: dict[str, Any]) -> dict[str, Any]:
    """The job as the API server would hold it: generation 1, no uid (nothing owns local stages)."""
    metadata = {"name": job.metadata.name, "namespace": job.metadata.namespace, "generation": 1,
                "annotations": dict(job.metadata.annotations), "labels": dict(job.metadata.labels)}
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": metadata,
            "spec": normalized_spec(job), "status": status}


def kept(body: dict[str, Any], result: Reconciled | None) -> dict[str, Any]:
    """The job with the status a reconcile (or a recorded report) returned: a local run keeps its job here, as the
    operator keeps its jobs in Runtime.jobs (the reconciler never writes into the body it is given)."""
    return body if result is None else {**body, "status": result.status}


def without_queue(job: BertTrainingJob) -> BertTrainingJob:
    """The job as this machine runs it: no Kueue here to admit a queued MPIJob, so it is not queued (on a
    cluster without Kueue it would wait suspended for ever)."""
    if job.spec.queue_name is None and job.spec.workload_priority_class_name is None:
        return job
    spec = job.spec.model_copy(update={"queue_name": None, "workload_priority_class_name": None})
    return job.model_copy(update={"spec": spec})


def one_trial_at_a_time(job: BertTrainingJob) -> BertTrainingJob:
    """A sweep as this machine runs it: its trials one after the other (each already takes every core here, and
    side by side they would only fight over them); the same trials, the same choice of the best."""
    task = task_of(job.spec)
    settings = task.settings(job.spec)
    sweep = getattr(settings, "sweep", None)
    if sweep is None or sweep.max_parallel == 1:
        return job
    settings = settings.model_copy(update={"sweep": sweep.model_copy(update={"max_parallel": 1})})
    spec = job.spec.model_copy(update={"task": job.spec.task.model_copy(update={task.field: settings})})
    return job.model_copy(update={"spec": spec})


Lookup = Callable[[str, str], dict[str, Any] | None]


def run_job(job: BertTrainingJob, options: LocalOptions, display: Display, interrupt: Interrupt,
            jobs: Lookup = lambda namespace, name: None, annotated: dict[str, tuple[str, str]] | None = None) -> LocalRun:
    """Run one job to Succeeded, Failed or an interrupt; returns its final status. `jobs` finds the other jobs
    (this run's and earlier runs'), for a job that takes inputs from them."""
    name = job.metadata.name
    if job.spec.queue_name:
        display.line(f"{name}: spec.queueName {job.spec.queue_name!r} ignored: no Kueue on this machine, it runs at once")
        job = without_queue(job)
    sweep = getattr(task_of(job.spec).settings(job.spec), "sweep", None)
    if sweep is not None and sweep.max_parallel > 1:
        display.line(f"{name}: sweep.maxParallel {sweep.max_parallel} ignored: its trials run one after the other here")
        job = one_trial_at_a_time(job)
    if job.spec.serve is not None:  # the cluster's KServe serves it; here `bertjob serve --local` does
        display.line(f"{name}: spec.serve ignored: no KServe on this machine; serve the model with "
                     f"`bertjob serve --local FILE --job {name}`")
        job = job.model_copy(update={"spec": job.spec.model_copy(update={"serve": None})})
    job_dir = (options.workdir / job.metadata.namespace / name).resolve()
    volumes = volume_map(job, options.yaml_dir, options.volumes, options.workdir, job_dir, annotated)
    outputs = volumes.local_uri(resolved(job.spec.output.uri))
    status = load_status(job_dir, job, options.fresh)
    if status.get("phase") == "Succeeded" and not cleans(job_body(job, status)):  # (a cleanup cut short runs again)
        display.line(f"{name}: already Succeeded in an earlier run ({job_dir / 'status.json'}); skipped")
        return LocalRun(name, "Succeeded", status, outputs, job_body(job, status), exported(status, volumes))
    check_trainer_installed(job)
    check_credentials(job)
    check_inputs(job, volumes)
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalSetupError(f"--workdir: cannot create {job_dir} ({exc.strerror})") from None

    body = job_body(job, status)
    stages = LocalStages(job_dir, volumes, dict(status), processes=options.processes)  # (its own copy, as a server's)
    # Default render settings: the image is not used locally, and progress comes from the report files, not a URL.
    reconciler = Reconciler(api=stages, events=display, render_settings=RenderSettings(pod_security=options.pod_security),
                            jobs=jobs, **template_inputs(options.templates))
    if options.templates:
        display.line(f"{name}: job templates {', '.join(o.ref for o in options.templates)}: the launcher's environment "
                     "and claims apply here; their containers and devices do not (see the notes in the stage log)")
    reports = ReportReader(job, volumes)
    display.start(name)
    started = time.monotonic()
    body = kept(body, reconciler.reconcile(body))
    waiting = condition_of(body["status"], WAITING) or {}
    if waiting.get("status") == "True":  # nothing here will make the producer succeed while this job waits
        display.close()
        raise LocalSetupError(f"{name}: {waiting.get('message')}; run that job first (in this file, or an earlier run "
                              f"with the same --workdir)")
    interrupted = False
    try:
        # (a sweep that succeeded may still be removing its other trials' checkpoints: its cleanup Job, a process)
        while (body["status"].get("phase") not in (*TERMINAL_PHASES, "Suspended")
               or (cleans(body) and not interrupted)):
            if interrupt.requested.is_set() and not interrupted:
                interrupted = True
                display.line(f"{name}: stopping (the trainer saves a checkpoint first; Ctrl-C again to abandon it)")
                stages.stop()
            stages.changed.wait(POLL_SECONDS)
            stages.changed.clear()
            current = body["status"].get("currentStage")
            # (a sweep's trial may end between two polls, its results read after the next one began: every trial)
            for stage in ([s.name for s in stages_of(job.spec)] if sweep is not None else [current] if current else []):
                patch = reports.fold(body["status"], stage)
                if patch:
                    body = kept(body, reconciler.record(body, patch))
            body = kept(body, reconciler.reconcile(body))
            display.progress(body["status"])
    except KeyboardInterrupt:  # the second Ctrl-C: kill now, record it
        interrupted = True
        stages.stop(now=True)
        body = kept(body, reconciler.reconcile(body))
    display.progress(body["status"])
    display.close()
    phase = body["status"]["phase"]
    took = time.monotonic() - started
    display.line(f"{name}: {phase} after {took:.0f}s; status in {job_dir / 'status.json'}, outputs in {outputs}")
    cleanup = mapping(body["status"].get(TRIAL_CLEANUP))
    if cleanup.get("phase"):
        display.line(f"{name}: trial cleanup {cleanup['phase']}: {text(cleanup.get('message')) or ''}")
    if sweep is not None and (drawn := sweep_plot.draw(body["status"], job_dir / "sweep.png")) is not None:
        display.line(f"{name}: the trials' dev metric, the best marked: {drawn}")
    return LocalRun(name, "Interrupted" if interrupted else phase, body["status"], outputs, body,
                    exported(body["status"], volumes))


def exported(status: dict[str, Any], volumes: VolumeMap) -> list[str]:
    """The exported models' locations (status.results.artifacts), pvc:// as their local folders."""
    found = []
    for uri in filter(None, (text(a.get("uri")) for a in records(mapping(status.get("results")).get("artifacts")))):
        try:
            found.append(volumes.local_uri(uri))
        except ValueError:  # not a URI local mode can map: shown as the status has it
            found.append(uri)
    return found


def printable_status(run: LocalRun) -> dict[str, Any]:
    """The status as the CR shows it, without acceptedSpec (the spec itself, echoed)."""
    status = {key: value for key, value in run.status.items() if key != ACCEPTED_SPEC}
    return {"name": run.name, "status": status}


def dependency_order(jobs: list[BertTrainingJob]) -> list[BertTrainingJob]:
    """The jobs with every producer before the jobs that take its outputs, the file's order otherwise; a cycle is
    refused with the jobs on it (as the operator refuses it)."""
    by_name = {job.metadata.name: job for job in jobs}
    specs = {name: normalized_spec(job) for name, job in by_name.items()}
    ordered: list[BertTrainingJob] = []
    placed: set[str] = set()
    bodies = {name: {"spec": spec} for name, spec in specs.items()}
    for job in jobs:
        cycle = cycle_error(job.metadata.name, specs[job.metadata.name], bodies)
        if cycle is not None:
            raise LocalSetupError(f"{job.metadata.name}: {cycle}")

    def place(name: str) -> None:  # depth first, producers before their dependents (no cycle is left)
        if name in placed or name not in by_name:
            return
        placed.add(name)
        for producer in producer_names(specs[name]):
            place(producer)
        ordered.append(by_name[name])

    for job in jobs:
        place(job.metadata.name)
    return ordered


def saved_run(options: LocalOptions, job: BertTrainingJob) -> dict[str, Any] | None:
    """A job of the file as an earlier run left it (its saved status), for the jobs that take its outputs."""
    path = options.workdir / job.metadata.namespace / job.metadata.name / "status.json"
    try:
        return job_body(job, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def run_jobs(jobs: list[BertTrainingJob], options: LocalOptions, display: Display | None = None) -> tuple[int, list[LocalRun]]:
    """Run the jobs, each once the jobs it takes inputs from are done; returns (exit code, outcomes)."""
    display = display or Display()
    unknown = sorted(set(options.only) - {job.metadata.name for job in jobs})
    if unknown:
        names = ", ".join(j.metadata.name for j in jobs)
        raise LocalSetupError(f"--job: no job named {', '.join(unknown)} in the file (it has {names})")
    by_name = {job.metadata.name: job for job in jobs}
    for job in jobs:
        missing = [f"{path}: {name}" for path, name in references(job.spec) if name not in by_name]
        if missing:
            raise LocalSetupError(f"{job.metadata.name}: {'; '.join(missing)} is not a job of this file; locally a job "
                                  "can only take inputs from the jobs run with it")
    chosen = [job for job in dependency_order(jobs) if not options.only or job.metadata.name in options.only]
    annotated = claim_annotations(jobs)
    for claim, (value, _) in annotated.items():  # a folder the file may not name: exit 2 before anything runs
        if claim not in options.volumes:
            annotated_folder(claim, value, options.yaml_dir)
    done: dict[str, dict[str, Any]] = {}

    def lookup(namespace: str, name: str) -> dict[str, Any] | None:
        if name in done:
            return done[name]
        return saved_run(options, by_name[name]) if name in by_name else None

    runs: list[LocalRun] = []
    with Interrupt() as interrupt:
        for job in chosen:
            run = run_job(job, options, display, interrupt, lookup, annotated)
            runs.append(run)
            done[run.name] = run.body
            if run.phase == "Interrupted":
                return EXIT_INTERRUPTED, runs
    return (EXIT_SUCCEEDED if all(run.phase == "Succeeded" for run in runs) else EXIT_FAILED), runs


def status_yaml(runs: list[LocalRun]) -> str:
    """`-o yaml`: one document per job, {name, status}, the status whole but for acceptedSpec. PyYAML writes every
    non-printable character as an escape, so a report's text cannot reach the terminal raw."""
    return yaml.safe_dump_all([printable_status(run) for run in runs], sort_keys=False, width=120)


def status_json(runs: list[LocalRun]) -> str:
    """`-o json`: the same documents as a JSON list (control characters written as \\u escapes)."""
    return json.dumps([printable_status(run) for run in runs], indent=2) + "\n"


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_SUCCEEDED", "LocalOptions", "LocalRun",
           "run_jobs", "status_json", "status_yaml"]
