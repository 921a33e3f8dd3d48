"""`bertjob run --local --template FILE`: the job runs with the templates forced on it, as a platform's policy would
force them; the launcher's environment reaches the ranks, the templates' containers and devices are named in the
stage log as not done locally, and the stage records the templates it was made with."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO
from tests.local.helpers import TINY, run_local, statuses

TEMPLATES = REPO / "examples" / "templates"


def test_a_local_run_applies_the_templates_environment_and_says_what_it_leaves_out(tmp_path: Path) -> None:
    env_template = tmp_path / "env.yaml"
    env_template.write_text("""name: trace-env
version: "3"
patch: |
  spec:
    mpiReplicaSpecs:
      Launcher:
        template:
          spec:
            containers:
              - name: launcher
                env:
                  - {name: BERT_TRAINER_LOG_FILE, value: "%s/rank-{rank}.log"}
""" % (tmp_path / "ranks"))
    done = run_local(str(TINY), "--job", "tiny-data", "--workdir", str(tmp_path / "runs"),
                     "--template", str(TEMPLATES / "efa.yaml"), "--template", str(TEMPLATES / "dataset-cache-init.yaml"),
                     "--template", str(env_template), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    status = statuses(done.stdout)["tiny-data"]
    assert status["phase"] == "Succeeded"
    assert [s["templates"] for s in status["stages"]] == [["efa@1", "dataset-cache-init@1", "trace-env@3"]] * 2
    assert status["policy"]["policies"] == ["local-templates"]
    # the launcher's environment reached the rank: its log file exists, with the trainer's structured lines
    assert "event=" in (tmp_path / "ranks" / "rank-0.log").read_text()
    log = next((tmp_path / "runs").rglob("*.log")).read_text()
    assert "# note: not run locally: Worker initContainer 'warm-cache' (a job template's)" in log
    assert "# note: not requested locally: vpc.amazonaws.com/efa on the Worker container 'worker'" in log
    assert "job templates efa@1, dataset-cache-init@1, trace-env@3" in done.stderr + done.stdout


def test_a_template_that_breaks_pod_security_fails_the_local_run_before_anything_runs(tmp_path: Path) -> None:
    locked = tmp_path / "infiniband.yaml"
    locked.write_text((TEMPLATES / "infiniband.yaml").read_text().replace("ipcLock: false", "ipcLock: true"))
    done = run_local(str(TINY), "--job", "tiny-data", "--workdir", str(tmp_path / "runs"), "--template", str(locked),
                     timeout=120)
    status = statuses(done.stdout)["tiny-data"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert done.returncode != 0 and failed["reason"] == "TemplateInvalid" and "line 28" in failed["message"]
    assert not list((tmp_path / "runs").rglob("*.log"))  # nothing ran
