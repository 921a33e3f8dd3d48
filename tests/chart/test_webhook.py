"""The admission handler called directly: the CLI's verdict, word for word, on objects as the API server sends them."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from bert_operator import handlers, webhook
from bert_operator.cli import main as bertjob
from tests.conftest import EXAMPLES
from tests.operator.test_invalid_specs import CASES


def as_admitted(document: dict[str, Any]) -> dict[str, Any]:
    """The object in an AdmissionReview: the user's document plus the fields the API server has set by then."""
    body = copy.deepcopy(document)
    body["metadata"] = {**body["metadata"], "uid": "5d6f3a2e-0000-4000-8000-000000000001", "generation": 1,
                        "creationTimestamp": "2026-11-26T10:00:00Z",
                        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
                                           "apiVersion": "bertoperator.io/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]}
    return body


def cli_lines(tmp_path: Path, document: dict[str, Any]) -> list[str]:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = bertjob(["validate", str(path)])
    return [] if code == 0 else [line.removeprefix(f"{path}: ") for line in stderr.getvalue().splitlines()]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_admitted(example: Path) -> None:
    for document in yaml.safe_load_all(example.read_text()):
        webhook.validate_job(body=as_admitted(document))  # no AdmissionError
        assert webhook.verdict(as_admitted(document)) == (None, [])


@pytest.mark.parametrize("name, document, path, message", CASES, ids=[c[0] for c in CASES])
def test_invalid_specs_are_rejected_with_the_clis_lines(name: str, document: dict, path: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(kopf.AdmissionError) as caught:
        webhook.validate_job(body=as_admitted(document))
    lines = str(caught.value).splitlines()
    assert caught.value.code == 422
    assert any(line.startswith(f"{path}: ") and message in line for line in lines)
    assert lines == cli_lines(tmp_path, document)


def test_the_handler_is_registered_only_when_served() -> None:
    registry = kopf.OperatorRegistry()
    assert registry._webhooks.get_all_handlers() == []
    handlers.register_webhook(registry)
    handler, policies = registry._webhooks.get_all_handlers()
    assert handler.id == webhook.HANDLER_ID and set(handler.operations) == {"CREATE", "UPDATE"}
    assert handler.subresource is None and handler.fn is webhook.validate_job
    assert handler.selector.group == "bertoperator.io" and handler.selector.any_name == "berttrainingjobs"
    assert policies.id == webhook.POLICY_HANDLER_ID and policies.fn is webhook.validate_policy
    assert policies.selector.any_name == "berttrainingpolicies" and set(policies.operations) == {"CREATE", "UPDATE"}
