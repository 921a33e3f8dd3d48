"""What the operator and the trainer exchange, in one place: standard library only.

The operator renders MPIJobs whose ranks run ``python -m bert_trainer``; the
trainer reports back through files in the stage's output folder and, when the
operator asks for it, HTTP reports to the operator's progress endpoint. Both
sides import their names from here, so a field or variable cannot be renamed
on one side only:

- the CRD's ``status.progress`` schema is built from :data:`PROGRESS_FIELDS`
  (``bert_operator.api.status``), and so is what the operator copies from a
  report (``bert_operator.reports``) and what the trainer writes
  (``bert_trainer.reports``);
- the ``BERTJOB_*`` variables are rendered by ``bert_operator.render.values``
  and read by ``bert_trainer.progress_push``;
- the labels are put on MPIJobs and pods by the renderer and selected on by
  the operator's watch.

Standard library only, like all of ``bert_common``: the trainer image and the
operator image both carry it, and neither carries the other's package.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Final

# --------------------------------------------------------------- identities

#: Audience prefix of the projected service-account token rank 0 sends with each report.
TOKEN_AUDIENCE: Final = "bert-operator"
#: Extras a TokenReview of a projected pod token carries (the pod the token was minted for).
POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA: Final = "authentication.kubernetes.io/pod-uid"


def token_audience(namespace: str, name: str) -> str:
    """The audience of one job's report tokens: the API server confirms a token only for the audience it was
    minted for, so a pod of job `bert-large` can never pass as one of job `bert`."""
    return f"{TOKEN_AUDIENCE}/{namespace}/{name}"
#: Where that token is mounted in launcher and worker pods.
TOKEN_DIR: Final = "/var/run/secrets/bertoperator.io"
TOKEN_FILE: Final = f"{TOKEN_DIR}/token"
#: The operator's report endpoint, below its progress URL.
REPORT_PATH: Final = "/progress/{namespace}/{name}"

# ------------------------------------------------ variables the launcher sets

#: Full URL of this job's report endpoint.
ENV_PROGRESS_URL: Final = "BERTJOB_PROGRESS_URL"
#: The stage a rank runs (e.g. phase1); every report names it.
ENV_STAGE: Final = "BERTJOB_STAGE"
#: Path of the projected token (re-read for each report: the kubelet rotates it).
ENV_TOKEN_FILE: Final = "BERTJOB_TOKEN_FILE"
#: All three, in the order the renderer sets them; set together or not at all.
REPORT_ENV: Final = (ENV_PROGRESS_URL, ENV_STAGE, ENV_TOKEN_FILE)
#: With an https:// progress URL: the CA that signed the operator's certificate, PEM in base64 (one line, so
#: `mpirun -x` carries it to every rank). A public certificate, not a secret.
ENV_PROGRESS_CA: Final = "BERTJOB_PROGRESS_CA"

# ------------------------------------------------------------------- labels

LABEL_PREFIX: Final = "bertoperator.io"
JOB_NAME_LABEL: Final = f"{LABEL_PREFIX}/job-name"
STAGE_LABEL: Final = f"{LABEL_PREFIX}/stage"
TASK_LABEL: Final = f"{LABEL_PREFIX}/task"

# ------------------------------------------------------------------ reports

#: Files a stage writes into its output folder (the record that outlives any report).
PROGRESS_FILE: Final = "progress.json"
RESULTS_FILE: Final = "results.json"
#: Keys of one HTTP report body: {"stage": ..., "progress": {...}} or {"stage": ..., "results": {...}}.
REPORT_STAGE: Final = "stage"
REPORT_PROGRESS: Final = "progress"
REPORT_RESULTS: Final = "results"

# ------------------------------------------------------------------- export

#: Where a training stage writes what it exports, under its output folder: `<stage output>/export/<format>/`.
#: The trainer writes there; the operator lists those URIs in `status.results.artifacts` once the stage succeeded.
EXPORT_FOLDER: Final = "export"
#: Export formats: a Hugging Face folder (config.json, model.safetensors, vocab.txt, tokenizer_config.json), a
#: TensorFlow SavedModel with a `serving_default` signature (TF Serving), and a Triton model repository (fine-tuned
#: models only: the SavedModel with its config.pbtxt and the transformer's assets). The trainer's `--export_formats`
#: takes a comma-separated subset of these (empty: none).
EXPORT_HF: Final = "hf"
EXPORT_SAVEDMODEL: Final = "savedmodel"
EXPORT_TRITON: Final = "triton"
EXPORT_FORMATS: Final = (EXPORT_HF, EXPORT_SAVEDMODEL, EXPORT_TRITON)
#: The Triton repository `<stage output>/export/triton/` holds one model folder, named by `serving_model_name`:
#: `config.pbtxt`, the version `1/model.savedmodel/`, and `assets/` (not a number, so Triton ignores it) with
#: `vocab.txt` and `serving.json` (task, head, labels, max_seq_length, do_lower_case, inputs, outputs), which the
#: KServe transformer (`python -m bert_trainer serve transformer --assets_uri .../assets`) reads.
TRITON_VERSION: Final = "1"
TRITON_ASSETS: Final = "assets"
SERVING_FILE: Final = "serving.json"


def serving_model_name(task_name: str) -> str:
    """The Triton model (and the predictor's v2 model name) of a fine-tuning task: the GLUE task's name in lower case
    (``mrpc``, ``cola``, ``mnli``) or ``squad``, whichever SQuAD version."""
    return "squad" if task_name.lower().startswith("squad") else task_name.lower()


@dataclass(frozen=True)
class ReportField:
    """One field of progress.json: its wire name, JSON type and meaning."""

    name: str
    kind: type
    description: str


#: The fields of progress.json, in the order the trainer writes them. The operator copies
#: exactly these onto ``status.progress``; the CRD's status schema declares exactly these
#: (plus the operator's own ``stage``, ``percent`` and ``display``), so none is pruned.
PROGRESS_FIELDS: Final = (
    ReportField("step", int, "Optimizer steps (or units of work) done in this stage."),
    ReportField("totalSteps", int, "Steps this stage runs in all."),
    ReportField("loss", float, "Training loss at the last reported step."),
    ReportField("mlmAccuracy", float, "Masked-LM accuracy on the last training batch (pretraining)."),
    ReportField("nspAccuracy", float, "Next-sentence accuracy on the last training batch (pretraining)."),
    ReportField("sequencesPerSecond", float, "Training throughput over all ranks."),
    ReportField("etaSeconds", float, "Estimated seconds until the stage ends."),
    ReportField("updatedAt", str, "When the trainer wrote these figures (RFC 3339, UTC)."),
)
PROGRESS_FIELD_NAMES: Final = tuple(field.name for field in PROGRESS_FIELDS)


def utc_now() -> str:
    """Now as RFC 3339 in UTC to the second: the one timestamp format in status, reports and Events."""
    return format_utc(datetime.datetime.now(tz=datetime.timezone.utc))


def format_utc(moment: datetime.datetime) -> str:
    """A moment in utc_now's format."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(stamp: str) -> datetime.datetime:
    """An RFC 3339 time as written in status and reports (`Z` or an offset; naive means UTC); ValueError if not one."""
    moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.timezone.utc)
