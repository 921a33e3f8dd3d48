"""The job model's apiVersion and kind are written as literals (mypy takes no expression in a Literal): they must stay
the API's own constants, which the CRD is generated from."""

from __future__ import annotations

import typing

from bert_operator.api.models import BertTrainingJob
from bert_operator.api.presets import API_GROUP, API_VERSION, KIND


def test_the_models_literals_are_the_apis_constants() -> None:
    fields = BertTrainingJob.model_fields
    assert typing.get_args(fields["api_version"].annotation) == (f"{API_GROUP}/{API_VERSION}",)
    assert typing.get_args(fields["kind"].annotation) == (KIND,)
