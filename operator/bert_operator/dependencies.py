"""Jobs that take their inputs from other jobs: which jobs, whether they are ready, and the URIs they give (pure).

A job may read a prepareData job's records (`spec.dataset.fromJob`), start from a
training job's final checkpoint (`spec.model.initCheckpointFrom`) and use another
job's vocab (`spec.model.vocabFrom`), all in its own namespace. Until every job it
names has Succeeded it waits (nothing is created, condition Waiting with reason
DependencyNotReady); one that failed, or was deleted after this job first saw it,
fails this job; jobs that wait for each other fail with DependencyCycle.

Resolving is substitution: the job gets the producers' locations written into
its spec (dataset.uri and each phase's dataPath, model.initCheckpoint,
model.vocab), so rendering, local mode and the trainer never learn that a
location came from another job. What it resolved to is recorded on the job
(`status.resolved`, with the producers' uids in `status.dependencies`) when its
first MPIJob is made, and a started job is never resolved again: deleting a
producer later does not touch a job that already has its inputs.

Every job records its own locations there too (`status.resolved.output` holds
the output a policy may have defaulted), which is what a dependent reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from .api import BertTrainingJob, SpecError
from .api.errors import FieldError
from .api.models import DatasetSpec, StoreSpec
from .api.parse import parse_job
from .api.presets import NVIDIA_CORPUS_FOLDER
from .api.required import require
from .api.status import ACCEPTED_SPEC
from .api.rules import references
from .tasks import stage_data_path, stages_of, task_of
from . import reasons

#: Jobs that have not started a job may wait for, directly or through others: what a cycle search reads at most
#: (a chain of data, pretraining and fine-tuning jobs is 3 long). A job whose chain goes further fails with
#: DependencyInvalid rather than wait for jobs it cannot see.
MAX_CHAIN = 32

#: The reasons a job fails with because of the jobs it names.
REASONS = frozenset({reasons.DEPENDENCY_FAILED, reasons.DEPENDENCY_INVALID, reasons.DEPENDENCY_CYCLE})

DATASET_FIELD = "spec.dataset.fromJob"
CHECKPOINT_FIELD = "spec.model.initCheckpointFrom.fromJob"
VOCAB_FIELD = "spec.model.vocabFrom.fromJob"


def raw_references(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field path, job name) of every job a raw spec (a dict, as the API server holds it) names, without parsing:
    the watch cache and the cycle search read many specs."""
    spec = spec if isinstance(spec, Mapping) else {}
    raw_dataset, raw_model = spec.get("dataset"), spec.get("model")
    dataset: Mapping[str, Any] = raw_dataset if isinstance(raw_dataset, Mapping) else {}
    model: Mapping[str, Any] = raw_model if isinstance(raw_model, Mapping) else {}
    found = [(DATASET_FIELD, dataset.get("fromJob"))]
    for key, path in (("initCheckpointFrom", CHECKPOINT_FIELD), ("vocabFrom", VOCAB_FIELD)):
        ref = model.get(key)
        found.append((path, ref.get("fromJob") if isinstance(ref, Mapping) else None))
    return [(path, name) for path, name in found if isinstance(name, str) and name]


def producer_names(spec: Mapping[str, Any]) -> list[str]:
    """The distinct jobs a raw spec names, in field order."""
    return list(dict.fromkeys(name for _, name in raw_references(spec)))


def effective_spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The spec a job runs: the accepted one once it started (later edits are refused), else the live one."""
    return (body.get("status") or {}).get(ACCEPTED_SPEC) or body.get("spec") or {}


def chain(name: str, spec: Mapping[str, Any], lookup: Callable[[str], dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
    """The jobs `spec` (of job `name`) depends on, directly or through others, by name (None: not found); it stops
    once it has read MAX_CHAIN that have not started (a started one waits for nobody: its producers are not read,
    so at most 3 reads per job that has not started). What the plan needs to judge readiness and cycles."""
    found: dict[str, dict[str, Any] | None] = {}
    todo = producer_names(spec)
    waiting = 0
    while todo and waiting < MAX_CHAIN:
        current = todo.pop(0)
        if current in found or current == name:
            continue
        body = lookup(current)
        found[current] = body
        if body is not None and not _started(body):
            waiting += 1
            todo.extend(producer_names(effective_spec(body)))
    return found


def _started(body: Mapping[str, Any]) -> bool:
    """A job that has its inputs (recorded when its first MPIJob was made) waits for nobody."""
    return bool((body.get("status") or {}).get("resolved"))


def find_cycle(name: str, spec: Mapping[str, Any], jobs: Mapping[str, dict[str, Any] | None]) -> list[str] | None:
    """The names along a cycle back to `name` (['a', 'b', 'a']) through jobs that have not started, or None.

    Depth first, without recursion (a cycle may be as long as the jobs given), and each job explored once: a job
    from which there is no way back is not walked again by another path (jobs naming two producers each would
    otherwise make the paths double at every step)."""
    explored: set[str] = set()
    path, on_path = [name], {name}
    stack = [iter(producer_names(spec))]
    while stack:
        for producer in stack[-1]:
            if producer == name:
                return [*path, name]
            body = jobs.get(producer)
            if producer in on_path or producer in explored or body is None or _started(body):
                continue
            path.append(producer)
            on_path.add(producer)
            stack.append(iter(producer_names(effective_spec(body))))
            break
        else:
            stack.pop()
            done = path.pop()
            on_path.discard(done)
            explored.add(done)
    return None


def beyond_limit(name: str, spec: Mapping[str, Any], jobs: Mapping[str, dict[str, Any] | None]) -> FieldError | None:
    """The field error for a job whose producers lead, directly or through others, to more jobs that have not
    started than :func:`chain` reads (MAX_CHAIN), on the field that leads there; None when all of them were read.
    Such a chain cannot be judged (a cycle longer than what was read looks like jobs still to come), and no real
    pipeline is that long: it fails the job instead of letting it wait forever."""
    if sum(1 for body in jobs.values() if body is not None and not _started(body)) < MAX_CHAIN:
        return None  # chain() read all there was
    for path, producer in raw_references(spec):
        seen: set[str] = set()
        todo = [producer]
        while todo:
            current = todo.pop()
            if current in seen or current == name:
                continue
            seen.add(current)
            if current not in jobs:
                return FieldError(path, f"BertTrainingJob {producer} waits, directly or through others, for more than "
                                        f"{MAX_CHAIN} jobs that have not started (a cycle among them, or a chain too "
                                        f"long to follow); a job may wait for at most {MAX_CHAIN}")
            body = jobs[current]
            if body is not None and not _started(body):
                todo.extend(producer_names(effective_spec(body)))
    return None


def cycle_error(name: str, spec: Mapping[str, Any], jobs: Mapping[str, dict[str, Any] | None]) -> FieldError | None:
    """The field error for a cycle through job `name` (spec `spec`) among `jobs`, on the field that starts it."""
    cycle = find_cycle(name, spec, jobs)
    if not cycle:
        return None
    path = next(p for p, other in raw_references(spec) if other == cycle[1])
    return FieldError(path, f"jobs {' -> '.join(cycle)} wait for each other's outputs, so none can start; break the cycle")


@dataclass(frozen=True)
class Waiting:
    """Some producer has not succeeded yet; `message` names each."""

    message: str
    dependencies: list[dict[str, Any]]


@dataclass(frozen=True)
class Broken:
    """The job cannot run: a producer failed, was deleted, cannot give what it is asked for, or a cycle."""

    reason: str
    errors: list[FieldError]
    dependencies: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Resolved:
    """The job with its producers' locations in its spec, and what to record."""

    job: BertTrainingJob
    dependencies: list[dict[str, Any]]


Resolution = Waiting | Broken | Resolved


def locations(job: BertTrainingJob) -> dict[str, Any]:
    """What `status.resolved` records of a job whose inputs are known: where it reads and writes (no secrets, only
    Secret names), and for pretraining each phase's records folder."""
    spec = job.spec
    record: dict[str, Any] = {
        "dataset": _store(spec.dataset),
        "output": _store(spec.output),
    }
    if spec.model.vocab:
        record["vocab"] = spec.model.vocab
    if spec.model.init_checkpoint:
        record["initCheckpoint"] = spec.model.init_checkpoint
    if spec.task.pretrain is not None:
        record["dataPaths"] = [stage_data_path(spec, stage) for stage in stages_of(spec)]
    return record


def _store(store: StoreSpec) -> dict[str, Any]:
    return {key: value for key, value in (("uri", store.uri), ("endpoint", store.endpoint), ("region", store.region),
                                          ("credentialsSecret", store.credentials_secret)) if value is not None}


def apply_record(job: BertTrainingJob, record: Mapping[str, Any]) -> BertTrainingJob:
    """`job` with the locations a started job recorded (it never resolves again)."""
    spec = job.spec
    if not references(spec):  # (every reconcile of a started job passes here: attribute reads only)
        return job
    dataset = spec.dataset
    if spec.dataset.from_job and record.get("dataset"):
        dataset = DatasetSpec.model_validate({**record["dataset"], "fromJob": spec.dataset.from_job}, strict=False)
    model = spec.model.model_copy(update={
        "vocab": spec.model.vocab or record.get("vocab"),
        "init_checkpoint": spec.model.init_checkpoint or record.get("initCheckpoint"),
    })
    task = spec.task
    if task.pretrain is not None and record.get("dataPaths"):
        phases = [phase.model_copy(update={"data_path": path}) for phase, path in zip(task.pretrain.phases, record["dataPaths"])]
        task = task.model_copy(update={"pretrain": task.pretrain.model_copy(update={"phases": phases})})
    return job.model_copy(update={"spec": spec.model_copy(update={"dataset": dataset, "model": model, "task": task})})


def resolve(job: BertTrainingJob, spec: Mapping[str, Any], jobs: Mapping[str, dict[str, Any] | None],
            seen: list[dict[str, Any]]) -> Resolution:
    """Whether `job`'s producers (looked up in `jobs`, as :func:`chain` read them) are ready, and if so the job with
    their locations; `seen` is status.dependencies as last written (the uids of producers seen before)."""
    name = job.metadata.name
    refs = raw_references(spec)
    recorded = {entry.get("name"): entry for entry in seen}
    entries: list[dict[str, Any]] = [{"name": producer, "fields": [path for path, other in refs if other == producer]}
               for producer in producer_names(spec)]
    for entry in entries:
        body = jobs.get(entry["name"])
        if body is not None:
            uid = (body.get("metadata") or {}).get("uid") or recorded.get(entry["name"], {}).get("uid")
            if uid:  # (local mode has none)
                entry["uid"] = uid
            entry["phase"] = (body.get("status") or {}).get("phase") or "Pending"
    cycle = cycle_error(name, spec, jobs)
    if cycle is not None:
        return Broken(reasons.DEPENDENCY_CYCLE, [cycle], entries)
    too_long = beyond_limit(name, spec, jobs)
    if too_long is not None:
        return Broken(reasons.DEPENDENCY_INVALID, [too_long], entries)
    errors: list[FieldError] = []
    waiting: list[str] = []
    for entry in entries:
        producer, where = entry["name"], entry["fields"][0]
        body = jobs.get(producer)
        before = recorded.get(producer, {}).get("uid")
        if body is None or (before and entry.get("uid") != before):
            if before:
                errors.append(FieldError(where, f"BertTrainingJob {producer} (uid {before}) was deleted before it "
                                                f"succeeded; apply it again, then this job again"))
            else:
                waiting.append(f"{producer} (not found in this namespace yet)")
            continue
        status = body.get("status") or {}
        phase = entry["phase"]
        if phase == "Failed":
            failed: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Failed"), {})
            errors.append(FieldError(where, f"BertTrainingJob {producer} Failed ({failed.get('reason', 'Failed')}: "
                                            f"{str(failed.get('message', ''))[:300]})"))
        elif phase != "Succeeded":  # (its phase only: the message, hence the status, changes when the phase does)
            waiting.append(f"{producer} ({phase})")
    if errors:
        return Broken(reasons.DEPENDENCY_FAILED, errors, entries)
    if waiting:
        return Waiting(f"waiting for BertTrainingJob {', '.join(waiting)} to succeed", entries)
    try:
        producers = {entry["name"]: body for entry in entries if (body := jobs.get(entry["name"])) is not None}
        return Resolved(_substitute(job, producers), entries)
    except SpecError as exc:
        return Broken(reasons.DEPENDENCY_INVALID, exc.errors, entries)


@dataclass(frozen=True)
class _Producer:
    """A succeeded producer as it ran: its spec with its recorded locations."""

    job: BertTrainingJob
    record: Mapping[str, Any]


def _producer(name: str, body: Mapping[str, Any], where: str) -> _Producer:
    status = body.get("status") or {}
    try:
        job = parse_job({**body, "spec": effective_spec(body), "status": None})
    except SpecError as exc:
        raise SpecError([FieldError(where, f"BertTrainingJob {name}'s spec cannot be read ({exc.errors[0]})")]) from None
    record = status.get("resolved") or {}
    return _Producer(apply_record(job, record) if record else job, record)


def _output(producer: _Producer) -> StoreSpec:
    """Where the producer wrote: its recorded output (a policy's default included), else its spec's."""
    recorded = producer.record.get("output")
    if recorded:
        try:
            return StoreSpec.model_validate(recorded, strict=False)
        except ValidationError:  # a status edited by hand: say so instead of failing every reconcile
            said = f"BertTrainingJob {producer.job.metadata.name}'s recorded output is not a location: {recorded!r}"
            raise SpecError([FieldError("status.resolved.output", said[:300])]) from None
    out = producer.job.spec.output
    return StoreSpec(uri=out.uri, endpoint=out.endpoint, region=out.region, credentials_secret=out.credentials_secret)


def _substitute(job: BertTrainingJob, bodies: Mapping[str, Mapping[str, Any]]) -> BertTrainingJob:
    """`job` with every reference replaced by the location it names; SpecError (field paths) if a producer cannot
    give what it is asked for."""
    spec = job.spec
    update: dict[str, Any] = {}
    model_update: dict[str, Any] = {}
    if spec.dataset.from_job:
        update.update(_dataset(job, _producer(spec.dataset.from_job, bodies[spec.dataset.from_job], DATASET_FIELD)))
    ref = spec.model.init_checkpoint_from
    if ref is not None:
        model_update["init_checkpoint"] = _checkpoint(ref.from_job, ref.stage,
                                                      _producer(ref.from_job, bodies[ref.from_job], CHECKPOINT_FIELD))
    if spec.model.vocab_from is not None:
        name = spec.model.vocab_from.from_job
        vocab = _producer(name, bodies[name], VOCAB_FIELD).job.spec.model.vocab
        if not vocab:
            raise SpecError([FieldError(VOCAB_FIELD, f"BertTrainingJob {name} has no vocab (its spec.model.vocab is unset)")])
        model_update["vocab"] = vocab
    if model_update:
        update["model"] = spec.model.model_copy(update=model_update)
    return job.model_copy(update={"spec": spec.model_copy(update=update)})


def _dataset(job: BertTrainingJob, producer: _Producer) -> dict[str, Any]:
    """The dataset and each phase's records folder from a prepareData job: the set of the phase's lengths."""
    spec, name = job.spec, producer.job.metadata.name
    made = producer.job.spec.task.prepare_data
    if made is None:
        raise SpecError([FieldError(DATASET_FIELD, f"BertTrainingJob {name} is a {task_of(producer.job.spec).name} job; "
                                                   f"only a prepareData job makes records")])
    out = _output(producer)
    given = spec.dataset
    dataset = given.model_copy(update={
        "uri": out.uri,
        "endpoint": given.endpoint or out.endpoint,
        "region": given.region or out.region,
        "credentials_secret": given.credentials_secret or out.credentials_secret,
    })
    sets = {(s.max_seq_length, s.max_predictions_per_seq): s for s in made.record_sets()}
    lower = producer.job.spec.model.lower_case
    pretrain = spec.task.pretrain
    assert pretrain is not None  # the rules allow dataset.fromJob for pretrain only
    phases, errors = [], []
    for i, phase in enumerate(pretrain.phases):
        if phase.data_path is not None:  # the user's choice of folder under the producer's output
            phases.append(phase)
            continue
        chosen = sets.get((phase.max_seq_length, phase.max_predictions_per_seq))
        if chosen is None:
            offered = ", ".join(f"{seq}/{pred}" for seq, pred in sets)
            errors.append(FieldError(f"spec.task.pretrain.phases[{i}]",
                                     f"maxSeqLength/maxPredictionsPerSeq {phase.max_seq_length}/{phase.max_predictions_per_seq} "
                                     f"has no records in prepareData job {name}, which makes {offered}; add the set "
                                     f"to its extraSets or set this phase's dataPath"))
            continue
        phases.append(phase.model_copy(update={"data_path": f"{chosen.folder_name(lower_case=lower)}/{NVIDIA_CORPUS_FOLDER}"}))
    if errors:
        raise SpecError(errors)
    task = spec.task.model_copy(update={"pretrain": pretrain.model_copy(update={"phases": phases})})
    return {"dataset": dataset, "task": task}


def _checkpoint(name: str, stage: str | None, producer: _Producer) -> str:
    """The output folder (our checkpoints, newest last) of a training job's stage, by default its last."""
    spec = producer.job.spec
    task = task_of(spec)
    if task.name == "prepareData":
        raise SpecError([FieldError(CHECKPOINT_FIELD, f"BertTrainingJob {name} is a prepareData job; it trains no model")])
    stages = stages_of(spec)
    chosen = stages[-1] if stage is None else next((s for s in stages if s.name == stage), None)
    if chosen is None:
        raise SpecError([FieldError("spec.model.initCheckpointFrom.stage",
                                    f"BertTrainingJob {name} has no stage {stage!r}; its stages: "
                                    f"{', '.join(s.name for s in stages)}")])
    out = _output(producer)
    assert out.uri
    return task.output(spec, chosen, out.uri)


def in_file(jobs: list[BertTrainingJob]) -> dict[str, dict[str, Any]]:
    """The jobs of one file as bodies that have succeeded: what `bertjob render` and `bertjob validate` resolve
    references against, before anything ran (a producer's output is then its spec's)."""
    return {job.metadata.name: {"apiVersion": job.api_version, "kind": job.kind,
                                "metadata": {"name": job.metadata.name, "namespace": job.metadata.namespace},
                                "spec": job.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
                                "status": {"phase": "Succeeded"}} for job in jobs}


def resolve_in_file(job: BertTrainingJob, bodies: Mapping[str, dict[str, Any]], *, need_all: bool) -> BertTrainingJob:
    """`job` with the locations the jobs of its file (`bodies`, from :func:`in_file`) will give it; SpecError naming
    the field for a cycle, a producer that cannot give what is asked, and (`need_all`) a producer not in the file."""
    spec = job.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    refs = raw_references(spec)
    if not refs:
        return job
    cycle = cycle_error(job.metadata.name, spec, bodies)
    if cycle is not None:
        raise SpecError([cycle])
    missing = [FieldError(path, f"BertTrainingJob {name} is not in this file; its outputs are known only once it "
                                f"ran (kubectl apply resolves it on the cluster)") for path, name in refs if name not in bodies]
    if missing:
        if need_all:
            raise SpecError(missing)
        return job
    return _substitute(job, bodies)


def resolve_file(jobs: list[BertTrainingJob], source: str | None = None, *, need_all: bool = True) -> list[BertTrainingJob]:
    """Every job of a file with the references between them resolved (:func:`resolve_in_file`); a SpecError names
    the file and job, also for a field a policy might have given but none did (api/required.py: what reaches here
    has had its policies applied, if it has any)."""
    unset: list[FieldError] = []
    for job in jobs:  # all first, every job's: a job takes its output from the producer it names
        try:
            require(job)
        except SpecError as exc:
            unset.extend(SpecError(exc.errors, f"{source}: {job.metadata.name}" if source else job.metadata.name).errors)
    if unset:
        raise SpecError(unset)
    bodies = in_file(jobs)
    out = []
    for job in jobs:
        try:
            out.append(resolve_in_file(job, bodies, need_all=need_all))
        except SpecError as exc:
            raise SpecError(exc.errors, f"{source}: {job.metadata.name}" if source else job.metadata.name) from None
    return out


__all__ = ["Broken", "Resolved", "Resolution", "Waiting", "apply_record", "beyond_limit", "chain", "cycle_error", "find_cycle",
           "in_file", "locations", "producer_names", "raw_references", "resolve", "resolve_file", "resolve_in_file"]
