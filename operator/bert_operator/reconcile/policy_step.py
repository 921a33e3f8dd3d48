"""The plan's policy step: the job as its namespace's BertTrainingPolicies make it, or why it may not run or wait.

The rules themselves (defaults, forced values, limits, conflicts) are bert_operator/policy.py, shared with the
admission webhook; this step decides what a reconcile does with them: judge a job that has not started, keep a
started one where its first MPIJob put it, and hold new MPIJobs while the policies cannot be trusted (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import reasons
from ..api import BertTrainingJob, SpecError
from ..api.required import unset_errors
from ..policy import PoliciesUnreadable, decide, selecting, template_errors
from .decisions import Context, Ended, Held
from .status_view import POLICY


@dataclass(frozen=True)
class Governed:
    """The job as the policies make it, and its status.policy (None: no policy applies)."""

    job: BertTrainingJob
    policy: Any


def govern(ctx: Context, job: BertTrainingJob, written: dict[str, Any]) -> Governed | Ended:
    """The job as its namespace's BertTrainingPolicies make it (defaults, forced values), with its status.policy; or,
    for a job that has not started, its end for breaking a policy (nothing is created).

    A started job is not judged again: a policy edited later gives its next stage the policy's current defaults
    and forced values, but its limits bind only jobs that have not started, and its output stays where the first
    MPIJob put it (status.resolved.output: a later stage reads the earlier one's checkpoints there). Fields a policy
    may give (api/required.py) are required here, once the policies had their chance."""
    given = ctx.observed.policy
    started = ctx.status.started
    if hold(ctx) is not None:  # a running stage goes on; a new MPIJob waits (follow.py)
        return Governed(recorded_output(ctx, job), ctx.status.policy)
    assert not isinstance(given, PoliciesUnreadable)  # hold() held the job for those
    if given is None or not selecting(given.policies, given.labels):  # no policy here: nothing to merge or parse
        unset = [] if started else [*unset_errors(job), *template_errors(job.spec.templates, [], job.metadata.namespace)]
        if unset:
            return Ended(unset, reasons.INVALID_SPEC)
        return Governed(recorded_output(ctx, job), None)
    try:
        decision = decide(written, given.labels, given.policies)
    except SpecError as exc:
        return Ended(exc.errors, reasons.POLICY_VIOLATION, job=job,
                     prefix="the job with its BertTrainingPolicies' values is not valid: ")
    if decision.violations and not started:
        return Ended(decision.violations, reasons.POLICY_VIOLATION, extra={POLICY: decision.status()},
                     job=decision.job or job)
    return Governed(recorded_output(ctx, decision.job or job), decision.status())


def recorded_output(ctx: Context, job: BertTrainingJob) -> BertTrainingJob:
    """A started job's output as its first MPIJob had it (status.resolved.output), whatever the policies say now."""
    recorded = ctx.status.recorded_output
    if not ctx.status.started or recorded is None:
        return job
    output = job.spec.output.model_copy(update={
        "uri": recorded.get("uri"), "endpoint": recorded.get("endpoint"), "region": recorded.get("region"),
        "credentials_secret": recorded.get("credentialsSecret")})
    return job.model_copy(update={"spec": job.spec.model_copy(update={"output": output})})


def hold(ctx: Context) -> Held | None:
    """Why the next MPIJob may not be made yet, if it may not."""
    given = ctx.observed.policy
    if isinstance(given, PoliciesUnreadable):
        return Held(reasons.POLICIES_UNREADABLE,
                    f"waiting to create the next MPIJob: the BertTrainingPolicies cannot be read ({given.reason})")
    holding = given.holding() if given is not None else []
    if holding:
        said = "; ".join(policy.message() for policy in holding[:3])
        more = f" (and {len(holding) - 3} more invalid policies)" if len(holding) > 3 else ""
        return Held(reasons.POLICY_INVALID, f"waiting to create the next MPIJob until the platform team fixes or "
                                            f"deletes it: {said}{more}")
    return None
