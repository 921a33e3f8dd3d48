"""Prometheus metrics of the operator, defined once and imported where they are counted."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_BY_PHASE = Gauge("bertoperator_jobs", "BertTrainingJobs known to this operator, by phase", ["phase"])
RECONCILE_SECONDS = Histogram(
    "bertoperator_reconcile_duration_seconds", "Time to reconcile one BertTrainingJob",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MPIJOBS_CREATED = Counter("bertoperator_mpijobs_created_total", "MPIJobs created (adoptions not counted)")
API_REQUESTS = Counter("bertoperator_api_requests_total", "Kubernetes API calls made by the reconciler", ["verb"])
API_ERRORS = Counter("bertoperator_api_errors_total", "Kubernetes API calls that failed", ["verb", "code"])
PROGRESS_REPORTS = Counter("bertoperator_progress_reports_total", "Trainer progress reports received", ["outcome"])
