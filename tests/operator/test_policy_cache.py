"""The operator's policy cache: watch events, the first list, a namespace missed by the watch, failing closed."""

from __future__ import annotations

from typing import Any

import pytest

from bert_operator.policy_cache import PolicyCache, policy_statuses

POLICY = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "p", "generation": 3},
          "spec": {"namespaceSelector": {"matchLabels": {"team": "a"}}, "forced": {"queueName": "team-a"}}}


class Api:
    def __init__(self, policies: list[dict[str, Any]] | Exception) -> None:
        self.policies = policies
        self.namespaces = {"team-a": {"team": "a"}, "team-b": {"team": "b"}}
        self.calls: list[str] = []

    def list_policies(self) -> list[dict[str, Any]]:
        self.calls.append("list policies")
        if isinstance(self.policies, Exception):
            raise self.policies
        return self.policies

    def list_namespace_labels(self) -> dict[str, dict[str, str]]:
        self.calls.append("list namespaces")
        return self.namespaces


def test_the_first_use_lists_the_policies_and_a_missed_namespace_lists_the_namespaces() -> None:
    api = Api([POLICY])
    cache = PolicyCache(api)
    given = cache.input_for("team-a")
    assert given is not None and [p.metadata.name for p in given.policies] == ["p"] and given.labels == {"team": "a"}
    cache.input_for("team-b")
    assert api.calls == ["list policies", "list namespaces"]  # one list each; team-b was listed with team-a
    assert cache.input_for("gone") is not None and api.calls[-1] == "list namespaces"


def test_watch_events_replace_and_remove_policies_and_no_policy_means_none() -> None:
    cache = PolicyCache(Api([]))
    assert cache.input_for("team-a") is None
    cache.policy_event("ADDED", POLICY)
    cache.namespace_event("ADDED", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    assert cache.input_for("team-a").policies[0].spec.forced.queue_name == "team-a"
    cache.policy_event("DELETED", POLICY)
    assert cache.input_for("team-a") is None


#: The team-a example's mistake: one field both defaulted and forced (the CRD's CEL and the webhook refuse it; with
#: both off, or before them, it reaches the operator).
BROKEN_SPEC = {"namespaceSelector": {"matchLabels": {"team": "a"}}, "defaults": {"queueName": "a"},
               "forced": {"queueName": "team-a"}, "limits": {"allowedImages": ["registry.example.com/bert/*"]}}


def test_an_invalid_policy_never_seen_valid_holds_the_namespaces_it_selects_and_its_status_says_why() -> None:
    cache = PolicyCache(Api([]))
    cache.namespace_event("ADDED", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    cache.namespace_event("ADDED", {"metadata": {"name": "team-b", "labels": {"team": "b"}}})
    cache.policy_event("ADDED", {**POLICY, "spec": BROKEN_SPEC})
    given = cache.input_for("team-a")
    assert given is not None and given.policies == ()
    [held] = given.holding()
    assert held.name == "p" and "spec.defaults: sets spec.queueName" in held.error
    assert cache.input_for("team-b").holding() == []  # not selected: untouched
    status = policy_statuses(cache.snapshot(), lambda namespace: {"team-a": 2, "team-b": 5}[namespace])["p"]
    valid = status["conditions"][0]
    assert (valid["status"], valid["reason"]) == ("False", "InvalidPolicy") and "spec.defaults" in valid["message"]
    assert (status["namespaces"], status["jobs"], status["observedGeneration"]) == (1, 2, 3)


def test_an_invalid_policy_whose_selector_cannot_be_read_holds_every_namespace() -> None:
    cache = PolicyCache(Api([]))
    cache.policy_event("ADDED", {**POLICY, "spec": {"namespaceSelector": {"matchExpressions": [
        {"key": "team", "operator": "In"}]}}})  # In without values: unreadable, so it may select anything
    assert [p.name for p in cache.input_for("team-b").holding()] == ["p"]


def test_an_invalid_generation_keeps_the_last_valid_one_enforced() -> None:
    cache = PolicyCache(Api([]))
    cache.policy_event("ADDED", POLICY)
    broken = {**POLICY, "metadata": {"name": "p", "generation": 4}, "spec": BROKEN_SPEC}
    cache.policy_event("MODIFIED", broken)
    given = cache.input_for("team-a")
    assert [p.spec.forced.queue_name for p in given.policies] == ["team-a"] and given.holding() == []
    cache.namespace_event("ADDED", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    status = policy_statuses(cache.snapshot(), lambda namespace: 1)["p"]
    valid = status["conditions"][0]
    assert (valid["status"], valid["reason"]) == ("False", "InvalidPolicy") and status["observedGeneration"] == 4
    assert "generation 3 still applies" in valid["message"] and status["namespaces"] == 1
    cache.policy_event("MODIFIED", {**POLICY, "metadata": {"name": "p", "generation": 5}})  # fixed
    assert policy_statuses(cache.snapshot(), lambda namespace: 1)["p"]["conditions"][0]["status"] == "True"
    cache.policy_event("DELETED", broken)
    assert cache.input_for("team-a") is None


def test_an_invalid_edit_that_widens_the_selector_holds_the_namespaces_only_it_selects() -> None:
    """The last valid generation governs team-a; the invalid edit also selects team-b, which it must hold (fail closed)
    rather than leave with no policy at all."""
    cache = PolicyCache(Api([]))
    cache.policy_event("ADDED", POLICY)
    widened = {**POLICY, "metadata": {"name": "p", "generation": 4}, "spec": {**BROKEN_SPEC, "namespaceSelector": {}}}
    cache.policy_event("MODIFIED", widened)
    assert cache.input_for("team-a").holding() == []  # governed by generation 3
    assert [p.name for p in cache.input_for("team-b").holding()] == ["p"]  # only generation 4 selects it: held
    for name, labels in Api([]).namespaces.items():
        cache.namespace_event("ADDED", {"metadata": {"name": name, "labels": labels}})
    message = policy_statuses(cache.snapshot(), lambda namespace: 1)["p"]["conditions"][0]["message"]
    assert "no new MPIJob is made in the 1 other namespace(s)" in message


def test_a_policy_list_that_fails_fails_the_caller_instead_of_running_jobs_without_policies() -> None:
    cache = PolicyCache(Api(ConnectionError("API down")))
    with pytest.raises(ConnectionError):
        cache.input_for("team-a")


def test_the_status_counts_namespaces_and_jobs_it_selects() -> None:
    cache = PolicyCache(Api([POLICY]))
    cache.namespace_event("ADDED", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    cache.namespace_event("ADDED", {"metadata": {"name": "team-b", "labels": {"team": "b"}}})
    status = policy_statuses(cache.snapshot(), lambda namespace: {"team-a": 2, "team-b": 5}[namespace])["p"]
    assert (status["namespaces"], status["jobs"], status["conflicts"]) == (1, 2, [])


def test_a_conflict_makes_both_policies_invalid_on_their_status() -> None:
    other = {**POLICY, "metadata": {"name": "q"}, "spec": {**POLICY["spec"], "forced": {"queueName": "shared"}}}
    cache = PolicyCache(Api([POLICY, other]))
    cache.namespace_event("ADDED", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    for name in ("p", "q"):
        status = policy_statuses(cache.snapshot(), lambda namespace: 1)[name]
        valid = status["conditions"][0]
        assert (valid["status"], valid["reason"]) == ("False", "PolicyConflict") and len(status["conflicts"]) == 1
        assert "spec.queueName in namespace team-a: BertTrainingPolicies p and q" in status["conflicts"][0]
