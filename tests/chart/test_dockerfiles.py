"""The Dockerfiles cannot be built here (no Docker engine): parse them and check what they rely on exists."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from bert_operator.cli import build_parser
from bert_operator.render import RenderSettings, render_all
from bert_operator.render.image import (
    SSH_AUTH_MOUNT_PATH, SSH_PORT, SSHD_CONFIG, TRAINER_GID, TRAINER_HOME, TRAINER_UID, WORKER_COMMAND,
)
from bert_operator.api.parse import parse_job
from tests.chart.render import objects
from tests.conftest import REPO, rank_command

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """Instructions with continuations joined and comment lines dropped, grouped by stage."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue  # comments (also inside continuations, as BuildKit drops them) and blank lines
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    assert current == "", f"{path.name}: dangling line continuation"
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, f"{path.name}: cannot read FROM {args}"
            stages.append(Stage(match.group(1), match.group(2)))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: only ARG may precede the first FROM, got {keyword}"
            name, _, default = args.partition("=")
            global_args[name] = default or None
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(global_args, stages)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(from-stage, sources, destination) of each COPY/ADD."""
    found = []
    for keyword, args in stage.instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(args)
        flags = {w.split("=", 1)[0]: w.split("=", 1)[-1] for w in words if w.startswith("--")}
        paths = [w for w in words if not w.startswith("--")]
        found.append((flags.get("--from"), paths[:-1], paths[-1]))
    return found


def ignored(relative: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    parts = Path(relative).parts
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(parts[0], p) or fnmatch.fnmatch(relative, p.removeprefix("**/"))
               for p in patterns)


def installed_packages(stage: Stage) -> set[str]:
    """Debian packages an `apt-get install` of this stage names."""
    found: set[str] = set()
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run):
            words = command.split()
            if "apt-get" in words and "install" in words:
                found |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return found


DOCKERFILES = {name: parse(REPO / name) for name in ("Dockerfile.operator", "Dockerfile.trainer")}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_multi_stage_with_versions_as_build_args(name: str) -> None:
    dockerfile = DOCKERFILES[name]
    names = [s.name for s in dockerfile.stages]
    assert len(dockerfile.stages) >= 2 and names[0] == "build" and names[-1] == "runtime"
    for index, stage in enumerate(dockerfile.stages):
        for variable in re.findall(r"\$\{(\w+)\}", stage.base):
            assert dockerfile.global_args.get(variable), f"{name}: FROM uses {variable} without a default ARG"
        for source_stage, _, _ in copies(stage):
            if source_stage is not None:
                assert source_stage in names[:index], f"{name}: COPY --from={source_stage} before that stage"
    assert any(src == "build" for src, _, _ in copies(dockerfile.final)), f"{name}: the runtime stage takes the build's result"
    # The runtime stage holds no source tree: nothing is copied from the context into it.
    assert all(src is not None for src, _, _ in copies(dockerfile.final))


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_copied_file_exists_and_is_in_the_build_context(name: str) -> None:
    sources = [source for stage in DOCKERFILES[name].stages for src, paths, _ in copies(stage) if src is None for source in paths]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"{name}: COPY {source}: no such file"
        assert not ignored(source.rstrip("/")), f"{name}: COPY {source} is excluded by .dockerignore"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dependencies_are_installed_before_the_source_is_copied(name: str) -> None:
    """Cache-friendly order: a code change does not reinstall dependencies."""
    build = DOCKERFILES[name].stages[0]
    order = [(kw, args) for kw, args in build.instructions if kw in ("COPY", "RUN")]
    first_source = next(i for i, (kw, args) in enumerate(order)
                        if kw == "COPY" and args.startswith(("common/", "operator/", "trainer/")))
    requirements = next(i for i, (kw, args) in enumerate(order) if kw == "RUN" and "requirements-from-pyproject.py" in args)
    assert requirements < first_source
    assert all(args.split()[0] in ("pyproject.toml", "scripts/requirements-from-pyproject.py", "scripts/build-horovod.sh")
               for kw, args in order[:requirements] if kw == "COPY")


def test_operator_image_runs_bertjob_operator_as_the_charts_non_root_user() -> None:
    final = DOCKERFILES["Dockerfile.operator"].final
    assert final.base.startswith("python:") and "slim" in final.base
    user = final.last("USER")
    assert user and user.split(":")[0] not in ("root", "0")
    [deployment] = [o for o in objects() if o["kind"] == "Deployment"]
    assert int(user.split(":")[0]) == deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    entrypoint, command = exec_form(final.last("ENTRYPOINT")), exec_form(final.last("CMD"))
    assert entrypoint == ["bertjob"] and entrypoint[0] in PYPROJECT["project"]["scripts"]
    subcommands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    assert command == ["operator"] and command[0] in subcommands
    assert [o for o in objects() if o["kind"] == "Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"][0] == "operator"
    build = DOCKERFILES["Dockerfile.operator"].stages[0]
    assert any("requirements-from-pyproject.py operator" in run for run in build.all("RUN"))
    ports = {int(p) for p in final.last("EXPOSE").split()}
    assert {8080, 8081, 9090, 9443} == ports


def test_trainer_image_provides_what_the_rendered_mpijobs_run() -> None:
    dockerfile = DOCKERFILES["Dockerfile.trainer"]
    build, final = dockerfile.stages[0], dockerfile.final
    assert "cuda" in build.base and "devel" in build.base and "runtime" in final.base
    assert {"TF_VERSION", "HOROVOD_VERSION"} <= {a.split("=")[0] for a in build.all("ARG")}
    assert {"CUDA_VERSION", "UBUNTU_VERSION"} <= set(dockerfile.global_args)
    runs = " ".join(build.all("RUN"))
    assert "scripts/build-horovod.sh" in runs and "HOROVOD_GPU_OPERATIONS=NCCL" in runs and "tensorflow[and-cuda]" in runs
    # The serve extra too: the InferenceService's transformer (spec.serve) runs this image's `serve transformer`.
    assert "requirements-from-pyproject.py trainer serve --drop tensorflow-cpu" in runs
    assert {"libnccl-dev", "libopenmpi-dev"} <= installed_packages(build)
    assert {"openssh-server", "openmpi-bin", "libnccl2", "python3"} <= installed_packages(final)
    # A scratch working directory, not the source tree (the package lives in the virtual environment).
    assert final.last("WORKDIR") not in ("/src", "/src/") and not (REPO / final.last("WORKDIR").lstrip("/")).exists()
    # The commands the MPIJobs run: python -m bert_trainer launch (waits for the workers), then mpirun (Open MPI);
    # sshd on the workers; python -m bert_trainer on each rank.
    job = parse_job(yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text()))
    [mpijob] = render_all(job, RenderSettings())
    replicas = mpijob["spec"]["mpiReplicaSpecs"]
    launcher = replicas["Launcher"]["template"]["spec"]["containers"][0]["command"]
    worker = replicas["Worker"]["template"]["spec"]["containers"][0]["command"]
    assert launcher[:4] == ["python", "-m", "bert_trainer", "launch"] and launcher[launcher.index("--") + 1] == "mpirun"
    assert worker == WORKER_COMMAND and worker[0] == "/usr/sbin/sshd"
    module = rank_command(launcher)[2]
    assert module == "bert_trainer" and importlib.util.find_spec("bert_trainer.__main__") is not None
    assert exec_form(final.last("CMD"))[:3] == ["python", "-m", "bert_trainer"]


def sshd_settings(final: Stage) -> dict[str, str]:
    """The settings the runtime stage's printf writes into the user's sshd_config."""
    runs = " ".join(final.all("RUN"))
    written = re.search(r"printf '%s\\n' (.*?) > (\S+)", runs)
    assert written, "no sshd_config written by printf"
    assert written.group(2) == SSHD_CONFIG, f"sshd_config written to {written.group(2)}, the workers read {SSHD_CONFIG}"
    return dict(line.split(" ", 1) for line in shlex.split(written.group(1)))


def test_trainer_image_runs_the_rendered_pods_as_its_non_root_user() -> None:
    """The rendered MPIJobs run as TRAINER_UID with sshd on SSH_PORT: the image must have made exactly that."""
    final = DOCKERFILES["Dockerfile.trainer"].final
    runs = " ".join(final.all("RUN"))
    assert final.last("USER") == f"{TRAINER_UID}:{TRAINER_GID}"
    assert f"useradd --uid {TRAINER_UID} --gid {TRAINER_GID} --create-home --home-dir {TRAINER_HOME}" in runs
    assert f"groupadd --gid {TRAINER_GID}" in runs
    job = parse_job(yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text()))
    [mpijob] = render_all(job, RenderSettings())
    assert mpijob["spec"]["sshAuthMountPath"] == SSH_AUTH_MOUNT_PATH == f"{TRAINER_HOME}/.ssh"
    for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
        context = replica["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (TRAINER_UID, TRAINER_GID, TRAINER_GID)
    launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert "--allow-run-as-root" not in launcher
    # sshd as that user: its port is the one mpirun's ssh is given, its host key and pid file are the user's and
    # outside ~/.ssh (the MPI Operator's key mount hides what the image put there).
    settings = sshd_settings(final)
    assert launcher[launcher.index("plm_rsh_args") + 1] == f"-p {settings['Port']}" and int(settings["Port"]) == SSH_PORT > 1023
    assert {int(p) for p in final.last("EXPOSE").split()} == {SSH_PORT}
    for key in ("HostKey", "PidFile"):
        assert settings[key].startswith(f"{TRAINER_HOME}/") and not settings[key].startswith(f"{SSH_AUTH_MOUNT_PATH}/"), key
    assert settings["StrictModes"] == "no" and settings["UsePAM"] == "no" and settings["PasswordAuthentication"] == "no"
    assert f"ssh-keygen -q -t ed25519 -N \"\" -f {settings['HostKey']}" in runs
    assert f"chown -R bert:bert {SSHD_CONFIG.rsplit('/', 1)[0]}" in runs
    assert "--allow-run-as-root" not in (REPO / "Dockerfile.trainer").read_text()


def test_requirements_script_lists_the_extras() -> None:
    spec = importlib.util.spec_from_file_location("requirements", REPO / "scripts" / "requirements-from-pyproject.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    project = PYPROJECT["project"]
    pyproject = REPO / "pyproject.toml"
    assert module.requirements(pyproject, ["operator"], []) == project["dependencies"] + project["optional-dependencies"]["operator"]
    trainer = module.requirements(pyproject, ["trainer"], ["tensorflow-cpu"])
    assert not any(r.startswith("tensorflow-cpu") for r in trainer) and any(r.startswith("tokenizers") for r in trainer)
    assert trainer.count("boto3>=1.34") == 1
    with pytest.raises(SystemExit, match="unknown extra"):
        module.requirements(pyproject, ["gpu"], [])


#: The source folders each image takes: its own package and bert_common (standard library only), never the other's.
IMAGE_PACKAGES = {"Dockerfile.operator": ("operator", "common/", "operator/"), "Dockerfile.trainer": ("trainer", "common/", "trainer/")}


@pytest.mark.parametrize("name", sorted(IMAGE_PACKAGES))
def test_each_image_holds_its_own_package_and_bert_common_only(name: str) -> None:
    """The trainer image has no operator package, pydantic, kopf or jinja2; the operator image no trainer or
    TensorFlow (tests/test_packages.py imports each package without the other side's dependencies)."""
    extra, *folders = IMAGE_PACKAGES[name]
    build = DOCKERFILES[name].stages[0]
    copied = {source for src, paths, _ in copies(build) if src is None for source in paths}
    assert {source for source in copied if source.endswith("/")} == set(folders)
    runs = " ".join(build.all("RUN"))
    assert f"requirements-from-pyproject.py {extra}" in runs
    spec = importlib.util.spec_from_file_location("requirements", REPO / "scripts" / "requirements-from-pyproject.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    installed = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in module.requirements(REPO / "pyproject.toml", [extra], [])}
    if extra == "trainer":
        assert not installed & {"pydantic", "kopf", "jinja2", "kubernetes", "pyyaml", "jsonschema"}
        # No wheel of the project (it would bring `bertjob`, whose package is not here): the two packages only.
        assert "bert_operator" not in runs and "cp -r common/bert_common trainer/bert_trainer" in runs
        assert 'python -c "import bert_trainer.cli"' in runs
    else:
        assert not installed & {"tensorflow", "tensorflow-cpu", "horovod", "tokenizers", "tensorboard"}
        assert "tensorflow" not in runs and "horovod" not in runs
        assert "pip install --no-deps /tmp/wheels/bert_operator-*.whl" in runs
