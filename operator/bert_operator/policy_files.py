"""BertTrainingPolicies without a cluster: what `bertjob validate --policy` and `bertjob render --policy` read and
decide, with the same :func:`bert_operator.policy.decide` the webhook and the operator call.

A policy file holds BertTrainingPolicy documents and, optionally, Namespace documents (whose labels are what the
policies' namespaceSelectors select), or a `List` of them: `kubectl get btp,namespaces -o yaml` gives one. A job's
namespace labels are, in this order: `--namespace-labels` (for every job), else the Namespace document of its
namespace, else none; `kubernetes.io/metadata.name` is always set, as the API server sets it on every namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .api import BertTrainingJob, SpecError
from .api.checks import check_label_key, check_label_value
from .api.errors import FieldError
from .api.parse import document_errors, load_documents, parse_job
from .api.policy import POLICY_KIND, BertTrainingPolicy
from .dependencies import resolve_file
from .policy import Decision, decide, location_errors, parse_policy, selecting

#: The label the API server gives every namespace (Kubernetes 1.22 and later), with its name as the value.
NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class PolicyFile:
    """The policies and the namespaces' labels of one or more policy files."""

    policies: tuple[BertTrainingPolicy, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def is_policy(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == POLICY_KIND


def _items(documents: list[Any]) -> list[Any]:
    """The documents with every `List` (what `kubectl get -o yaml` prints) replaced by its items."""
    out: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List" and isinstance(document.get("items"), list):
            out.extend(document["items"])
        else:
            out.append(document)
    return out


def _namespace(document: dict[str, Any], label: str) -> tuple[str, dict[str, str]]:
    raw_meta = document.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    name, labels = meta.get("name"), meta.get("labels") or {}
    errors = list(document_errors(document))
    if not isinstance(name, str) or not name:
        errors.append(FieldError("metadata.name", "a Namespace needs its name"))
        name = ""
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        errors.append(FieldError("metadata.labels", "must be a mapping of strings to strings"))
    if errors:
        raise SpecError(errors, label)
    return name, dict(labels)


def read_policy_files(texts: list[tuple[str, str]]) -> PolicyFile:
    """The policies and Namespaces of each (text, source); SpecError naming the file, the document and the field
    of every problem (a policy the webhook would refuse is refused here too)."""
    policies: list[BertTrainingPolicy] = []
    namespaces: dict[str, dict[str, str]] = {}
    errors: list[FieldError] = []
    for text, source in texts:
        documents = _items(load_documents(text, source))
        for index, document in enumerate(documents):
            label = source if len(documents) == 1 else f"{source}[{index}]"
            try:
                if is_policy(document):
                    policies.append(parse_policy(document))
                elif isinstance(document, dict) and document.get("kind") == "Namespace":
                    name, labels = _namespace(document, label)
                    namespaces[name] = labels
                else:
                    kind = document.get("kind") if isinstance(document, dict) else None
                    raise SpecError([FieldError("kind", f"a policy file holds {POLICY_KIND} and Namespace documents "
                                                        f"(or a List of them), got {kind!r}")])
            except SpecError as exc:
                errors.extend(SpecError(exc.errors, label).errors)
    names = [p.metadata.name for p in policies]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(FieldError("metadata.name", f"BertTrainingPolicy {name} is given more than once"))
    if errors:
        raise SpecError(errors)
    return PolicyFile(tuple(policies), namespaces)


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` as labels, each key and value as Kubernetes accepts them; ValueError saying which is not."""
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE[,KEY=VALUE...], got {item!r}")
        problems = [*check_label_key("label", key), *check_label_value("label", value)]
        if problems:
            raise ValueError(f"{key}={value}: {problems[0].message}")
        labels[key] = value
    return labels


def labels_of(namespace: str, given: Mapping[str, str] | None, known: PolicyFile) -> tuple[dict[str, str], str]:
    """The labels of `namespace` the policies are matched against, and where they came from (for the user)."""
    if given is not None:
        return {**given, NAME_LABEL: namespace}, "--namespace-labels"
    if namespace in known.namespaces:
        return {**known.namespaces[namespace], NAME_LABEL: namespace}, f"Namespace {namespace} in the policy file"
    return {NAME_LABEL: namespace}, "no labels given (--namespace-labels, or a Namespace document in the policy file)"


@dataclass(frozen=True)
class Decided:
    """One job of a file under the policies: as they make it, with its references resolved, and what they set."""

    job: BertTrainingJob
    resolved: BertTrainingJob
    decision: Decision
    labels: Mapping[str, str]
    labels_from: str


def decide_documents(documents: list[tuple[str, Any]], source: str, known: PolicyFile,
                     given: Mapping[str, str] | None, *, need_all: bool) -> list[Decided]:
    """Every job of a file (its documents, each with the label its errors carry) as the operator would run it in
    its namespace: defaults and forced values in place, references to other jobs of the file resolved (to the
    outputs the policies gave those), and every violation: SpecError listing them all, each naming the file, the
    job and the field."""
    decided: list[tuple[Decision, dict[str, str], str]] = []
    errors: list[FieldError] = []
    for label, document in documents:
        raw_meta = document.get("metadata") if isinstance(document, dict) else None
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        raw_namespace = meta.get("namespace")
        namespace = raw_namespace if isinstance(raw_namespace, str) else "default"
        labels, labels_from = labels_of(namespace, given, known)
        try:
            if not isinstance(document, dict):
                parse_job(document)  # refuses it, as what it is
            decision = decide(document, labels, known.policies)
        except SpecError as exc:
            errors.extend(SpecError(exc.errors, label).errors)
            continue
        job = decision.job
        assert job is not None
        if decision.violations:
            errors.extend(SpecError(decision.violations, f"{label}: {job.metadata.name}").errors)
        decided.append((decision, labels, labels_from))
    if errors:
        raise SpecError(errors)
    jobs = [decision.job for decision, _, _ in decided]
    resolved = resolve_file(jobs, source, need_all=need_all)  # type: ignore[arg-type]
    out = []
    for (decision, labels, labels_from), job in zip(decided, resolved):
        chosen = selecting(known.policies, labels)
        errors.extend(SpecError(list(location_errors(job, chosen, references_only=True)),
                                f"{source}: {job.metadata.name}").errors)
        out.append(Decided(decision.job, job, decision, labels, labels_from))  # type: ignore[arg-type]
    if errors:
        raise SpecError(errors)
    return out
