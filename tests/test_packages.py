"""Two packages that stand alone, one shared table, one version.

The trainer image holds bert_trainer and bert_common without pydantic, kopf or jinja2; the operator image holds
bert_operator and bert_common without TensorFlow. A clean venv per image is too slow for every run
(scripts/check-clean-venvs.sh does that); here each package is imported module by module with the other side's
distributions refused to the project's code (scripts/import-every-module.py), and every import statement, lazy
ones included, is read from the source.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pydantic
import pytest
import yaml

import bert_common
import bert_operator
import bert_trainer
from bert_common.bert_config import ACTIVATIONS, API_FIELDS, BERT_PRESETS, FIELDS, FIELDS_BY_NAME
from bert_operator.api.models import BertConfig as ApiBertConfig
from bert_operator.render.values import DEFAULT_TRAINER_IMAGE
from bert_trainer.model.config import BertConfig as TrainerBertConfig
from bert_trainer.model.config import ConfigError
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
#: Distributions whose import name is not their name with `-` as `_`.
IMPORT_NAMES = {"pyyaml": "yaml", "prometheus-client": "prometheus_client", "tensorflow-cpu": "tensorflow"}
PACKAGES = {module.__name__: Path(module.__file__).resolve().parent for module in (bert_common, bert_operator, bert_trainer)}
#: bert_operator modules that may import bert_trainer, lazily: local mode reads the trainer's reports with the
#: trainer's own storage reader (`bertjob run --local` needs both extras: bootstrap.sh's role `local`).
OPERATOR_MODULES_USING_THE_TRAINER = {"bert_operator.local.runner", "bert_operator.local.sweep_plot"}


def import_names(requirements: list[str]) -> set[str]:
    names = (re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower() for requirement in requirements)
    return {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in names}


#: What only one side's extra installs, so the other side's code may not import it. Horovod is the trainer's
#: too (built from source by scripts/build-horovod.sh, so not in the extra).
OPERATOR_ONLY = import_names(EXTRAS["operator"]) - import_names(EXTRAS["trainer"]) | {"bert_operator"}
TRAINER_ONLY = import_names(EXTRAS["trainer"]) - import_names(EXTRAS["operator"]) | {"horovod", "bert_trainer"}


def test_the_extras_split_the_dependencies_by_side() -> None:
    """The base install is bert_common's (nothing); pip cannot take a base dependency away from an extra."""
    assert PYPROJECT["project"]["dependencies"] == []
    assert {"pydantic", "kopf", "jinja2", "kubernetes", "yaml"} <= OPERATOR_ONLY
    assert {"tensorflow", "horovod", "tokenizers"} <= TRAINER_ONLY


@pytest.fixture(scope="module")
def imports_with_refusals() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Both import checks, started together (the trainer's pays TensorFlow's import, the operator's kopf's)."""
    roots = [str(path.parent) for path in PACKAGES.values()]  # this session's packages, a worktree's included
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([*roots, *filter(None, [os.environ.get("PYTHONPATH")])])}
    script = str(REPO / "scripts" / "import-every-module.py")
    checks = {"bert_trainer": OPERATOR_ONLY, "bert_operator": TRAINER_ONLY}
    processes = {
        package: subprocess.Popen(
            [sys.executable, script, package, *(f"--refuse={name}" for name in sorted(refused))], env=env,
            cwd=REPO / "scripts", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for package, refused in checks.items()
    }
    yield processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("package", ["bert_trainer", "bert_operator"])
def test_every_module_imports_without_the_other_sides_dependencies(
    package: str, imports_with_refusals: dict[str, subprocess.Popen[str]]
) -> None:
    output, _ = imports_with_refusals[package].communicate(timeout=240)
    assert imports_with_refusals[package].returncode == 0, output
    assert re.search(rf"^{package}: (\d+) of \1 modules imported$", output, re.MULTILINE), output


def imported_modules(path: Path) -> Iterator[str]:
    """Every absolute module an import statement of this file names, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    return ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))


@pytest.mark.parametrize("package,refused", [("bert_trainer", OPERATOR_ONLY), ("bert_operator", TRAINER_ONLY)])
def test_no_import_statement_reaches_the_other_side(package: str, refused: set[str]) -> None:
    """Lazy imports too, which importing every module does not run."""
    found = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        name = module_name(package, path)
        allowed = {"bert_trainer"} if name in OPERATOR_MODULES_USING_THE_TRAINER else set()
        found += [f"{name} imports {module}" for module in imported_modules(path)
                  if module.partition(".")[0] in refused - allowed]
    assert found == []


def test_bert_common_needs_only_the_standard_library() -> None:
    found = [f"{module_name('bert_common', path)} imports {module}"
             for path in sorted(PACKAGES["bert_common"].rglob("*.py")) for module in imported_modules(path)
             if module.partition(".")[0] not in sys.stdlib_module_names | {"bert_common", "__future__"}]
    assert found == []


# ------------------------------------------------------------------ the BERT config table


def test_both_bert_configs_have_the_tables_fields_types_and_defaults() -> None:
    api = ApiBertConfig.model_fields
    assert list(api) == [field.name for field in API_FIELDS]
    trainer = {field.name: field for field in dataclasses.fields(TrainerBertConfig)}
    assert list(trainer) == [field.name for field in FIELDS]
    schema = ApiBertConfig.model_json_schema()["properties"]
    for field in FIELDS:
        # The trainer requires vocab_size in a config file (TrainerBertConfig.from_dict), else the table's default.
        assert trainer[field.name].default in (field.default, dataclasses.MISSING), field.name
        assert trainer[field.name].type == field.type.__name__, field.name
        if field.in_api:
            assert api[field.name].default == field.default and api[field.name].description == field.description
            declared = {"integer": int, "number": float, "string": str}[schema[field.name]["type"]]
            assert declared is field.type, field.name
            bounds = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
            assert {key: schema[field.name][word] for key, word in bounds.items() if word in schema[field.name]} \
                == field.bounds(), field.name
            assert f"Default {field.default}" in field.description, field.name
    assert tuple(schema["hidden_act"]["enum"]) == ACTIVATIONS


def out_of_bounds(field: Any) -> list[object]:
    values: list[object] = [1, "leaky_relu"] if field.type is str else [True, "1"]
    if field.type is float:
        values += [float("nan"), float("inf")]
    for key, limit in field.bounds().items():
        step = 1 if field.type is int else 1e-3
        values.append(limit - step if key == "ge" else limit if key in ("gt", "lt") else limit + step)
    return values


@pytest.mark.parametrize("field", FIELDS, ids=lambda field: field.name)
def test_both_bert_configs_take_and_refuse_the_same_values(field: Any) -> None:
    good = [*ACTIVATIONS] if field.choices else [field.default]
    for value in good:
        assert getattr(TrainerBertConfig.from_dict({"vocab_size": 100, field.name: value}), field.name) == value
        if field.in_api:
            assert getattr(ApiBertConfig(**{field.name: value}), field.name) == value
    for value in out_of_bounds(field):
        with pytest.raises(ConfigError, match=field.name):
            TrainerBertConfig.from_dict({"vocab_size": 100, field.name: value})
        if field.in_api:
            with pytest.raises(pydantic.ValidationError, match=field.name):
                ApiBertConfig(**{field.name: value})


def test_the_presets_are_the_tables_defaults_in_both_models() -> None:
    assert BERT_PRESETS["base"] == ApiBertConfig().model_dump() == {f.name: f.default for f in API_FIELDS}
    for name, preset in BERT_PRESETS.items():
        assert ApiBertConfig(**preset).model_dump() == preset
        assert TrainerBertConfig.preset(name).to_dict() == {**preset, "layer_norm_eps": FIELDS_BY_NAME["layer_norm_eps"].default}


# ------------------------------------------------------------------ the version


def test_the_version_is_written_once_and_read_everywhere() -> None:
    version = bert_common.__version__
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bert_common.__version__"}
    assert bert_trainer.__version__ == version and DEFAULT_TRAINER_IMAGE.endswith(f":{version}")
    chart = yaml.safe_load((REPO / "charts" / "bert-operator" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version
    # Every image tag of this project that the chart, the Dockerfiles and the docs quote.
    tags = {}
    for path in [REPO / "README.md", REPO / "Dockerfile.operator", REPO / "Dockerfile.trainer",
                 *(REPO / "charts" / "bert-operator").glob("*.yaml"), REPO / "charts" / "bert-operator" / "README.md",
                 *(REPO / "docs").glob("*.md")]:
        for match in re.finditer(r"ghcr\.io/bert-operator/(?:operator|trainer):([\w.+-]+)", path.read_text()):
            tags[f"{path.relative_to(REPO)}: {match.group(0)}"] = match.group(1)
    assert len(tags) >= 6 and {where: tag for where, tag in tags.items() if tag != version} == {}
