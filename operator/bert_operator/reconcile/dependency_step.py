"""The plan's dependency step: a job that takes inputs from other jobs, with their locations filled in.

Resolving a reference (the producer, its phase, what it gives, cycles and chains) is bert_operator/dependencies.py,
shared with local mode; this step decides what a reconcile does with the answer: a started job uses what it
recorded and reads no other job, one that has not started waits, fails, or goes on with its inputs, which its
namespace's policies' location limits bind as they bind its own.
"""

from __future__ import annotations

from typing import Any

from .. import dependencies as deps
from .. import reasons
from ..api import BertTrainingJob
from ..policy import PolicyInput, location_errors, selecting
from .decisions import Context, Ended
from .status_view import DEPENDENCIES


def resolve(ctx: Context, job: BertTrainingJob, written: dict[str, Any]) -> deps.Resolved | deps.Waiting | Ended:
    """The job with the locations of the jobs it takes inputs from, and status.dependencies; or the wait for them
    (nothing is created), or its end. A started job uses what it recorded and reads no other job."""
    record = ctx.status.resolved
    if ctx.status.started and record:
        return deps.Resolved(deps.apply_record(job, record), ctx.status.dependencies)
    spec = written.get("spec") or {}
    if not deps.raw_references(spec):
        return deps.Resolved(job, [])
    outcome = deps.resolve(job, spec, ctx.observed.producers, ctx.status.dependencies)
    if isinstance(outcome, deps.Resolved):
        # What another job gives is known only now: the policies' location limits bind it as they bind the job's own.
        given = ctx.observed.policy
        if isinstance(given, PolicyInput):
            refused = list(location_errors(outcome.job, selecting(given.policies, given.labels), references_only=True))
            if refused:
                return Ended(refused, reasons.POLICY_VIOLATION, extra={DEPENDENCIES: outcome.dependencies}, job=job)
        return outcome
    if isinstance(outcome, deps.Broken):
        return Ended(outcome.errors, outcome.reason, extra={DEPENDENCIES: outcome.dependencies}, job=job)
    return outcome
