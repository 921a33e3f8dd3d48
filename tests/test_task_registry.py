"""A task is its operator module, its trainer module and its model in api/models.py (docs/contributing.md, "Adding a
task"): both registries find their modules, and a throwaway task added that way shows up everywhere a task list
used to be written by hand. Pure and fast: no TensorFlow, no processes."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import Field, create_model

import bert_operator.tasks as operator_tasks
import bert_trainer.tasks as trainer_tasks
from bert_operator.api import rules
from bert_operator.api.crd import crd, printer_columns
from bert_operator.api.models import ApiModel, BertTrainingJob, BertTrainingJobSpec, TaskSpec
from bert_operator.local.summary import metric
from bert_trainer import cli
from bert_trainer.model import hf_export, hf_names
from bert_trainer.tasks import predict

OPERATOR_TASKS = ("pretrain", "squad", "glue", "prepareData")  # the order the API documents them (TaskSpec)
TRAINER_TASKS = ("pretrain", "prepare-data", "glue", "squad", "export", "predict", "sync", "remove-checkpoints", "launch",
                 "serve")  # pipeline order


def test_the_operator_registry_is_every_task_module_in_the_apis_order_and_nothing_else() -> None:
    found = operator_tasks.discover(operator_tasks.__path__, operator_tasks.__name__)
    assert tuple(task.name for task in found) == OPERATOR_TASKS
    assert tuple(task.name for task in operator_tasks.TASKS) == OPERATOR_TASKS
    assert [task.field for task in found] == list(TaskSpec.model_fields)
    modules = {type(task).__module__.rsplit(".", 1)[1] for task in found}
    assert len(modules) == len(found) and not modules & {"base", "flags"}  # one module a task; shared code is none


def test_the_trainer_registry_is_every_task_module_by_its_order_and_nothing_else() -> None:
    found = trainer_tasks.discover(trainer_tasks.__path__, trainer_tasks.__name__)
    assert tuple(task.NAME for task in found) == TRAINER_TASKS
    assert tuple(task.NAME for task in trainer_tasks.TASKS) == TRAINER_TASKS
    names = {getattr(task, "__name__", "").rsplit(".", 1)[1] for task in found}
    assert not names & {"common", "finetuning"}  # shared code, not tasks
    assert set(cli.build_parser().get_default("subparsers")) == set(TRAINER_TASKS)


OPERATOR_MODULE = '''
from typing import Any, Iterator

from bert_operator.api.errors import FieldError
from bert_operator.tasks.base import OperatorTask


class Demo(OperatorTask):
    name = "demoTask"
    field = "demo_task"
    stage_name = "demo"
    dataset_storage = "1Gi"
    reads_records = True

    def check(self, spec: Any, max_positions: int) -> Iterator[FieldError]:
        if self.settings(spec).steps > 10:
            yield FieldError("spec.task.demoTask.steps", "must be <= 10")

    def trainer_args(self, spec: Any, stage: Any) -> list[str]:
        return ["demo-task", "--steps", str(self.settings(spec).steps)]

    def summary(self, results: dict[str, Any]) -> str:
        return f"demo score {results.get('score')}"


TASK = Demo()
'''

TRAINER_MODULE = '''
import argparse

from bert_trainer.model.heads import Head

NAME = "demo-task"
HELP = "a throwaway task"
ORDER = 45


def _predict_check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.predict_file.endswith(".demo"):
        parser.error(f"--predict_file: {args.predict_file}: a demo file ends in .demo")


HEAD = Head(label="Demo", architecture="BertForDemo", tensors={"cls/demo/output_weights": "demo.weight"},
            detect=("cls/demo/output_weights",), outputs=("demo_logits",), predict_names=("demo",),
            predict_seq_length=64, predict_check=_predict_check)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=1)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.steps > 10:
        parser.error(f"--steps must be <= 10, got {args.steps}")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    print(f"demo ran {args.steps} steps")
    return 0
'''


class DemoSettings(ApiModel):
    """The throwaway task's settings model, as api/models.py would hold it."""

    steps: int = Field(1, ge=1, description="Steps to run.")


#: TaskSpec and BertTrainingJobSpec with the throwaway task's field, as api/models.py would have them.
DemoTaskSpec: Any = create_model("TaskSpec", __base__=TaskSpec,
                                 demo_task=(DemoSettings | None, Field(None, description="A throwaway task.")))
DemoJobSpec: Any = create_model("BertTrainingJobSpec", __base__=BertTrainingJobSpec,
                                task=(DemoTaskSpec, Field(..., description="What to run.")))


def _module_dir(root: Path, source: str) -> str:
    root.mkdir()
    (root / "demo_task.py").write_text(textwrap.dedent(source))
    return str(root)


@pytest.fixture
def demo_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The throwaway task's two modules placed in the task packages (as if written there), both registries
    rediscovered, and everything undone afterwards."""
    monkeypatch.setattr(operator_tasks, "__path__", [*operator_tasks.__path__, _module_dir(tmp_path / "op", OPERATOR_MODULE)])
    monkeypatch.setattr(trainer_tasks, "__path__", [*trainer_tasks.__path__, _module_dir(tmp_path / "tr", TRAINER_MODULE)])
    found = operator_tasks.discover(operator_tasks.__path__, operator_tasks.__name__, DemoTaskSpec)
    monkeypatch.setattr(operator_tasks, "TASKS", found)
    monkeypatch.setattr(operator_tasks, "TASK_NAMES", tuple(task.name for task in found))
    monkeypatch.setattr(trainer_tasks, "TASKS", trainer_tasks.discover(trainer_tasks.__path__, trainer_tasks.__name__))
    hf_names.head_tensors.cache_clear()
    yield
    hf_names.head_tensors.cache_clear()
    for name in ("bert_operator.tasks.demo_task", "bert_trainer.tasks.demo_task"):
        sys.modules.pop(name, None)


def _job(task: dict[str, Any], **spec: Any) -> BertTrainingJob:
    body = {"task": task, "dataset": {"uri": "s3://data/demo"}, "output": {"uri": "s3://out/demo"}, **spec}
    return BertTrainingJob.model_validate({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob",
                                           "metadata": {"name": "demo", "namespace": "ns"},
                                           "spec": DemoJobSpec.model_validate(body)})


@pytest.mark.usefixtures("demo_task")
def test_a_task_added_as_two_modules_and_a_field_is_in_the_registry_the_crd_the_rules_and_the_summary() -> None:
    assert operator_tasks.TASK_NAMES == (*OPERATOR_TASKS, "demoTask")
    # The CRD: its settings under spec.task, the one-task rule, and the Task printer column's description.
    document = crd(DemoJobSpec)
    version = document["spec"]["versions"][0]
    task = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["task"]
    assert task["properties"]["demoTask"]["properties"]["steps"]["minimum"] == 1
    assert (task["minProperties"], task["maxProperties"]) == (1, 1)
    column = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Task")
    assert column["description"] == f"{', '.join(OPERATOR_TASKS)} or demoTask."
    listed = f"{', '.join(OPERATOR_TASKS[:-1])} or {OPERATOR_TASKS[-1]}."  # "pretrain, squad, glue or prepareData."
    assert next(c for c in printer_columns() if c["name"] == "Task")["description"] == listed
    # The rules: the one-task rule names it, its own rule runs, and its facts (reads_records) are asked.
    both = rules.check(_job({"glue": {}, "demoTask": {}}))
    assert [str(e) for e in both] == [f"spec.task: must set exactly one of {', '.join(OPERATOR_TASKS)}, demoTask; "
                                      "got glue and demoTask"]
    alone = [str(e) for e in rules.check(_job({"demoTask": {"steps": 11}}, dataset={"fromJob": "maker"}))]
    assert alone == ["spec.task.demoTask.steps: must be <= 10"]
    assert rules.check(_job({"pretrain": {}}, dataset={"fromJob": "maker"})) == []
    glue = [str(e) for e in rules.check(_job({"glue": {}}, dataset={"fromJob": "maker"},
                                             model={"vocab": "s3://models/vocab.txt", "initCheckpoint": "s3://models/bert.safetensors"}))]
    assert glue == ["spec.dataset.fromJob: only pretrain and demoTask read records another job makes (a prepareData "
                    "job); glue reads files, so give dataset.uri"]
    # The stages and the trainer command the registry renders for it.
    spec = _job({"demoTask": {"steps": 3}}).spec
    assert [stage.name for stage in operator_tasks.stages_of(spec)] == ["demo"]
    assert operator_tasks.task_of(spec).trainer_args(spec, operator_tasks.stages_of(spec)[0]) == ["demo-task", "--steps", "3"]
    # `bertjob run --local`'s summary.
    assert metric({"task": "demoTask", "results": {"score": 0.5}}) == "demo score 0.5"


def test_forgetting_the_tasks_field_in_the_model_is_refused_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_tasks, "__path__", [*operator_tasks.__path__, _module_dir(tmp_path / "op", OPERATOR_MODULE)])
    try:
        with pytest.raises(ImportError, match=r"modules without a field: demoTask \(demo_task\); fields without a module: none"):
            operator_tasks.discover(operator_tasks.__path__, operator_tasks.__name__)
    finally:
        sys.modules.pop("bert_operator.tasks.demo_task", None)


@pytest.mark.usefixtures("demo_task")
def test_a_task_added_as_a_trainer_module_is_a_subcommand_and_its_head_is_exported_and_predicted(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    names = [task.NAME for task in trainer_tasks.TASKS]
    assert names.index("demo-task") == names.index("squad") + 1  # ORDER 45: after squad (40), before export (50)
    assert tuple(name for name in names if name != "demo-task") == TRAINER_TASKS
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert "demo-task" in cli.build_parser().format_help()
    assert cli.main(["demo-task", "--steps", "3"]) == 0
    assert "demo ran 3 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo-task", "--steps", "11"])
    assert exited.value.code == 2 and "--steps must be <= 10, got 11" in capsys.readouterr().err
    # Its head: the Hugging Face class and tensor names the exporters use, and what predict accepts.
    assert hf_export.architecture({"cls/demo/output_weights": 0}) == "BertForDemo"
    assert hf_export.architecture({"output_weights": 0}) == "BertForSequenceClassification"
    assert hf_names.google_to_hf("cls/demo/output_weights") == ("demo.weight", False)
    assert hf_names.hf_to_google("demo.weight") == ("cls/demo/output_weights", False)
    with pytest.raises(hf_export.ExportError, match="none of the pretraining, GLUE, SQuAD or Demo heads"):
        hf_export.architecture({})
    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    actions = {action.dest: action for action in parser._actions}  # noqa: SLF001 - argparse keeps them there
    assert actions["task_name"].choices == ["CoLA", "MRPC", "MNLI", "squad", "demo"]
    assert actions["max_seq_length"].help == "default 128 (GLUE), 384 (squad), 64 (demo)"
    assert predict.needs("demo") == "BertForDemo"
    args = parser.parse_args(["--model", "m", "--task_name", "demo", "--predict_file", "dev.tsv", "--output_dir", "o"])
    with pytest.raises(SystemExit) as exited:
        predict.validate(parser, args)
    assert exited.value.code == 2 and "--predict_file: dev.tsv: a demo file ends in .demo" in capsys.readouterr().err
    assert args.max_seq_length == 64  # its default, set before the checks
