"""Fields every job needs before it runs that its schema nevertheless leaves optional: a BertTrainingPolicy may give
them (`defaults.output`), so the API server must accept a job without them, and the operator, the webhook and the
CLI require them only once the policies of the job's namespace have been applied (policy.decide, reconcile/policy_step.py,
dependencies.resolve_file).
"""

from __future__ import annotations

from typing import Iterator

from .errors import FieldError, SpecError
from .models import BertTrainingJob


def unset_errors(job: BertTrainingJob) -> Iterator[FieldError]:
    """One error per field the job (its policies' values applied) still lacks, saying where it may come from."""
    if job.spec.output.uri is None:
        yield FieldError("spec.output.uri", (
            "required, and no BertTrainingPolicy selecting namespace "
            f"{job.metadata.namespace} gives it: set the job's output.uri (s3://bucket/prefix or pvc://claim/path), "
            "or have the platform team give one in a policy's defaults.output"))


def require(job: BertTrainingJob) -> BertTrainingJob:
    """`job` if it lacks nothing (:func:`unset_errors`), else SpecError: for what renders a job with no policies."""
    errors = list(unset_errors(job))
    if errors:
        raise SpecError(errors)
    return job
