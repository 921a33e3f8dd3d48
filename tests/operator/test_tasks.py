"""The task registry covers the API: every task the CRD offers is registered once, with a trainer subcommand."""

from __future__ import annotations

import pkgutil

import bert_operator.tasks as registry
from bert_operator.api.models import TaskSpec
from bert_operator.tasks import TASKS


def test_every_task_field_of_the_crd_model_has_exactly_one_registered_task() -> None:
    fields = {name: info.alias or name for name, info in TaskSpec.model_fields.items()}
    assert sorted(task.field for task in TASKS) == sorted(fields)
    assert {task.field: task.name for task in TASKS} == fields  # the wire name is the CRD's key


def test_each_task_module_defines_one_task_and_all_are_registered() -> None:
    modules = [m.name for m in pkgutil.iter_modules(registry.__path__) if m.name not in ("base", "flags", "trials")]
    defined = [getattr(__import__(f"bert_operator.tasks.{name}", fromlist=["TASK"]), "TASK") for name in modules]
    assert sorted(map(id, defined)) == sorted(map(id, TASKS))


def test_stage_names_are_distinct_and_dns_safe() -> None:
    from bert_operator.api.models import BertTrainingJobSpec

    single = [task.stage_name for task in TASKS if task.stage_name]
    assert len(single) == len(set(single)) and all(name.isalnum() and name.islower() for name in single)
    spec = BertTrainingJobSpec.model_validate({"task": {"pretrain": {}}, "dataset": {"uri": "s3://data/x"},
                                               "output": {"uri": "s3://out/x"}})
    assert [s.name for s in registry.stages_of(spec)] == ["phase1", "phase2"]
    assert registry.task_of(spec).stage_weights(spec) == [0.9, 0.1]
