"""Prometheus metrics of the operator, defined once and imported where they are counted.

The training gauges carry `namespace` and `job` labels naming the BertTrainingJob. Prometheus gives every scraped
series target labels of the same names (the operator pod's namespace, the scrape job), so its scrape must honour the
exported ones: the chart's ServiceMonitor sets honorLabels, a hand-written scrape config needs `honor_labels: true`.
"""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram

from .version import package_version

JOBS_BY_PHASE = Gauge("bertoperator_jobs", "BertTrainingJobs known to this operator, by phase", ["phase"])
RECONCILE_SECONDS = Histogram(
    "bertoperator_reconcile_duration_seconds", "Time to reconcile one BertTrainingJob",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MPIJOBS_CREATED = Counter("bertoperator_mpijobs_created_total", "MPIJobs created (adoptions not counted)")
API_REQUESTS = Counter("bertoperator_api_requests_total", "Kubernetes API calls made by the reconciler", ["verb"])
API_ERRORS = Counter("bertoperator_api_errors_total", "Kubernetes API calls that failed", ["verb", "code"])
PROGRESS_REPORTS = Counter("bertoperator_progress_reports_total", "Trainer progress reports received", ["outcome"])

# Training figures from the job's status.progress (bert_operator.training_metrics keeps them): one series set per job
# that has reported and not ended, for the stage it last reported on.
STAGE_LABELS = ("namespace", "job", "stage")
TRAINING_LOSS = Gauge("bertoperator_training_loss", "Training loss at the trainer's last reported step", STAGE_LABELS)
TRAINING_SEQUENCES_PER_SECOND = Gauge(
    "bertoperator_training_sequences_per_second", "Training throughput over all ranks at the last report", STAGE_LABELS)
TRAINING_PROGRESS_RATIO = Gauge(
    "bertoperator_training_progress_ratio",
    "Fraction of the stage done, 0-1: step / totalSteps of the stage's last report", STAGE_LABELS)
TRAINING_ETA_SECONDS = Gauge(
    "bertoperator_training_eta_seconds", "The trainer's estimate of the seconds until the stage ends", STAGE_LABELS)
TRAINING_JOB_PROGRESS_RATIO = Gauge(
    "bertoperator_training_job_progress_ratio",
    "Fraction of the whole job done, 0-1: status.progress.percent / 100 (each stage weighted by its share of the job)",
    ("namespace", "job"))

BUILD_INFO = Gauge("bertoperator_build_info", "Always 1; the labels say which operator build is running",
                   ["version", "python", "trainer_image"])
#: Every metric the operator exports: the chart's dashboard test checks its panels query only these.
EXPORTED = (JOBS_BY_PHASE, RECONCILE_SECONDS, MPIJOBS_CREATED, API_REQUESTS, API_ERRORS, PROGRESS_REPORTS, TRAINING_LOSS,
            TRAINING_SEQUENCES_PER_SECOND, TRAINING_PROGRESS_RATIO, TRAINING_ETA_SECONDS, TRAINING_JOB_PROGRESS_RATIO,
            BUILD_INFO)
def publish_build_info(trainer_image: str) -> None:
    """Set bertoperator_build_info once at startup: a dashboard can tell which build (and which default trainer
    image, the one jobs without spec.image run) each operator replica is, e.g. halfway through a rollout."""
    BUILD_INFO.labels(version=package_version(), python=platform.python_version(), trainer_image=trainer_image).set(1)
