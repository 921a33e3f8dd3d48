"""`kubectl bertjob` (bert_operator.kubectl) against the emulated API server, over HTTP on loopback.

Most jobs here are written straight through the client, with a status as the operator writes it (the strict layer
checks and prunes it against the CRD's status schema, so only real fields survive), with pods, pod logs and Events
beside them; one test runs the real operator, so that what the plugin reads there is the operator's own. get,
describe, wait and --version run as the module's own process (`python -m bert_operator.kubectl`), the rest through
the entry function.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import kmock
import pytest
import yaml

from bert_operator import kubectl
from bert_operator.api.crd import PRINTER_COLUMNS
from bert_operator.api.status import JobPhase
from tests.conftest import REPO, free_port
from tests.operator.cluster import EmulatedCluster, OperatorProcess

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
TINY = yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text())
NS = "ml-training"
OTHER_NS = "team-b"
OPERATOR_NS = "plugin-operator"
GROUP, VERSION, PLURAL = "bertoperator.io", "v1alpha1", "berttrainingjobs"


def ago(seconds: float) -> str:
    moment = datetime.datetime.now(tz=datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_condition(kind: str, state: str, reason: str, message: str = "") -> dict[str, Any]:
    """A condition as the operator writes one, for a status a test sets (fakes.condition looks one up)."""
    return {"type": kind, "status": state, "reason": reason, "message": message, "lastTransitionTime": ago(60)}


def running_status() -> dict[str, Any]:
    """A running job's status, its times counted back from now when the fixture makes the job (not at import:
    the suite runs for minutes between the two, and the ages shown are asserted)."""
    return {
        "phase": "Running", "task": "pretrain", "model": "custom", "workers": 2, "gpus": 8, "currentStage": "phase2",
        "startTime": ago(600),
        "stages": [
            {"name": "phase1", "mpiJob": "run-1-phase1", "phase": "Succeeded", "startTime": ago(600),
             "completionTime": ago(300), "restarts": 1, "lastRestartTime": ago(500),
             "lastRestartReason": "pod run-1-phase1-worker-1: Evicted: the node was drained",
             "gpus": 8, "runningSeconds": 5400, "gpuHours": 12.0},
            {"name": "phase2", "mpiJob": "run-1-phase2", "phase": "Running", "startTime": ago(290), "gpus": 8,
             "runningSince": ago(280)},
        ],
        "conditions": [new_condition("Valid", "True", "SpecValid"),
                       new_condition("Ready", "True", "Running", "stage phase2 runs"),
                       new_condition("Running", "True", "MPIJobRunning", "MPIJob ml-training/run-1-phase2 is running.")],
        "progress": {"stage": "phase2", "step": 4, "totalSteps": 10, "loss": 5.25, "sequencesPerSecond": 312.4,
                     "etaSeconds": 75.0, "updatedAt": ago(3600), "percent": 94, "display": "94% phase2"},
        "results": {"finalLoss": 6.5, "checkpoint": "s3://bert-demo/results/bert-tiny/phase1/ckpt-90",
                    "artifacts": [{"stage": "phase1", "format": "hf", "uri": "s3://bert-demo/results/bert-tiny/phase1/export/hf"},
                                  {"stage": "phase1", "format": "savedmodel",
                                   "uri": "s3://bert-demo/results/bert-tiny/phase1/export/savedmodel"}]},
        "resolved": {"dataset": {"uri": "s3://bert-demo/records", "endpoint": "http://minio.minio.svc:9000",
                                 "credentialsSecret": "minio-credentials"},
                     "output": {"uri": "s3://bert-demo/results/bert-tiny"},
                     "dataPaths": ["s3://bert-demo/records/tiny/seq64", "s3://bert-demo/records/tiny/seq128"]},
        "dependencies": [{"name": "prep-1", "uid": "uid-prep-1", "phase": "Succeeded", "fields": ["spec.dataset.fromJob"]}],
        "policy": {"policies": ["team-defaults"],
                   "applied": [{"path": "spec.queueName", "value": "gpu-queue", "how": "default", "policy": "team-defaults"}]},
    }


#: `cluster` (conftest.py): kmock behind the strict layer (schema checks, status pruning and label selectors as a real
#: API server), with what kubectl-like clients need.
EMULATED = {"client_side": True, "namespaces": [NS, OTHER_NS, OPERATOR_NS]}


def make_job(cluster: EmulatedCluster, name: str, status: dict[str, Any], document: dict[str, Any] = TINY,
             namespace: str = NS) -> dict[str, Any]:
    body = copy.deepcopy(document)
    body["metadata"] = {"name": name, "namespace": namespace, "creationTimestamp": ago(900)}
    cluster.apply_job(body, uid=f"uid-{name}")
    return set_status(cluster, name, status, namespace)


def set_status(cluster: EmulatedCluster, name: str, status: dict[str, Any], namespace: str = NS) -> dict[str, Any]:
    return cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def make_pod(cluster: EmulatedCluster, name: str, job: str, stage: str, role: str, created: str) -> None:
    labels = {"bertoperator.io/job-name": job, "bertoperator.io/stage": stage, "bertoperator.io/task": "pretrain",
              "training.kubeflow.org/job-name": f"{job}-{stage}", "training.kubeflow.org/job-role": role,
              "training.kubeflow.org/operator-name": "mpi-operator"}
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
            "labels": labels, "creationTimestamp": created}, "spec": {"containers": [{"name": role, "image": "trainer"}]}}
    kubernetes.client.CoreV1Api(cluster.client).create_namespaced_pod(NS, body, _preload_content=False)


def post_event(cluster: EmulatedCluster, job: str, uid: str, reason: str, message: str, when: str,
               kind: str = "Normal") -> None:
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{job}.{reason.lower()}-{uid[-6:]}", "namespace": NS},
             "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BertTrainingJob", "name": job,
                                "namespace": NS, "uid": uid},
             "type": kind, "reason": reason, "message": message, "source": {"component": "bert-operator"},
             "firstTimestamp": when, "lastTimestamp": when, "count": 1}
    kubernetes.client.CoreV1Api(cluster.client).create_namespaced_event(NS, event, _preload_content=False)


@pytest.fixture(scope="module")
def jobs(emulated: EmulatedCluster) -> EmulatedCluster:
    """run-1 (two stages, in phase2, with everything describe shows), its pods and logs and Events, a failed job, and
    a job in another namespace."""
    cluster = emulated
    make_job(cluster, "run-1", running_status())
    failed = {"phase": "Failed", "task": "squad", "model": "large", "workers": 1, "gpus": 4, "currentStage": "squad",
              "stages": [{"name": "squad", "mpiJob": "failed-1-squad", "phase": "Failed"}],
              "conditions": [new_condition("Failed", "True", "MPIJobFailed", "launcher exited 1: CUDA out of memory")]}
    make_job(cluster, "failed-1", failed, SQUAD)
    make_job(cluster, "elsewhere-1", {"phase": "Pending", "task": "squad", "model": "large", "workers": 1, "gpus": 4},
             SQUAD, namespace=OTHER_NS)
    make_pod(cluster, "run-1-phase1-launcher-abcde", "run-1", "phase1", "launcher", ago(600))
    make_pod(cluster, "run-1-phase2-launcher-old", "run-1", "phase2", "launcher", ago(295))
    make_pod(cluster, "run-1-phase2-launcher-fghij", "run-1", "phase2", "launcher", ago(280))
    make_pod(cluster, "run-1-phase2-worker-0", "run-1", "phase2", "worker", ago(270))  # newest, not a launcher
    cluster.write_pod_log(NS, "run-1-phase1-launcher-abcde", "phase1 step 90 loss 6.5")
    cluster.write_pod_log(NS, "run-1-phase2-launcher-old", "the evicted launcher's last words")
    cluster.write_pod_log(NS, "run-1-phase2-launcher-fghij", *(f"phase2 step {i}" for i in range(1, 5)))
    cluster.write_pod_log(NS, "run-1-phase2-worker-0", "worker output is not the launcher's")
    post_event(cluster, "run-1", "uid-run-1", "Running", "stage phase2 is running", ago(280))
    post_event(cluster, "run-1", "uid-run-1", "Pending", "stage phase1 created MPIJob run-1-phase1", ago(610))
    post_event(cluster, "run-1", "uid-run-1", "StageRestarted", "phase1 restarted: Evicted", ago(500), "Warning")
    post_event(cluster, "run-1", "uid-earlier-run-1", "Failed", "an earlier job of this name failed", ago(3000), "Warning")
    post_event(cluster, "failed-1", "uid-failed-1", "Failed", "launcher exited 1", ago(30), "Warning")
    return cluster


def plugin(cluster: EmulatedCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m bert_operator.kubectl ARGS --kubeconfig <the emulator's>` as its own process."""
    return subprocess.run([sys.executable, "-m", "bert_operator.kubectl", *args, "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=timeout)


def entry(capsys: pytest.CaptureFixture[str], cluster: EmulatedCluster | None, *args: str) -> tuple[int, str, str]:
    """The console script's function in this process: (exit code, stdout, stderr)."""
    extra = ["--kubeconfig", str(cluster.kubeconfig)] if cluster is not None else []
    capsys.readouterr()
    code = kubectl.main([*args, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def plugin_watches(cluster: EmulatedCluster) -> int:
    """How many watches of BertTrainingJobs the plugin has opened so far (its user agent is kubectl-bertjob/...)."""
    return sum(1 for method, plural, watch, agent, *_ in cluster.requests()
               if method == "GET" and plural == PLURAL and watch and agent.startswith("kubectl-bertjob/"))


def table_rows(text: str) -> list[dict[str, str]]:
    """A kubectl-style table as {header: cell} per row, cut at the header's column starts."""
    header, *lines = text.splitlines()
    names, starts = header.split(), []
    for name in names:  # left to right: AGE is also the end of STAGE
        starts.append(header.index(name, starts[-1] + 1 if starts else 0))
    ends = starts[1:] + [None]
    return [{name: line[start:end].strip() for name, start, end in zip(names, starts, ends)} for line in lines]


def test_version_is_the_packages(cluster: EmulatedCluster) -> None:
    from importlib import metadata

    try:
        expected = metadata.version("bert-operator")
    except metadata.PackageNotFoundError:
        expected = "unknown"
    answer = subprocess.run([sys.executable, "-m", "bert_operator.kubectl", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert answer.returncode == 0 and answer.stdout.strip() == f"kubectl-bertjob {expected}"


def test_get_shows_the_crds_printer_columns_then_steps_and_eta(jobs: EmulatedCluster) -> None:
    answer = plugin(jobs, "get", "-n", NS)
    assert answer.returncode == 0, answer.stderr
    header = answer.stdout.splitlines()[0].split()
    printed = [c["name"].upper() for c in PRINTER_COLUMNS if c["type"] != "date"]
    assert header == ["NAME", *printed, "STEPS", "ETA", "AGE"]
    assert {"PHASE", "TASK", "MODEL", "WORKERS", "GPUS", "PROGRESS", "STAGE"} <= set(printed)
    rows = {row["NAME"]: row for row in table_rows(answer.stdout)}
    assert set(rows) == {"run-1", "failed-1"}  # not the job of the other namespace
    run = rows["run-1"]
    assert (run["PHASE"], run["TASK"], run["MODEL"], run["WORKERS"], run["GPUS"]) == ("Running", "pretrain", "custom", "2", "8")
    assert (run["PROGRESS"], run["REASON"], run["STAGE"], run["STEPS"], run["ETA"]) == ("94% phase2", "Running", "phase2", "4/10", "1m15s")
    assert run["AGE"] == "15m"
    assert rows["failed-1"]["PHASE"] == "Failed" and rows["failed-1"]["ETA"] == ""


def test_get_all_namespaces_wide_one_job_and_yaml(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = entry(capsys, jobs, "get", "-A", "-o", "wide")
    assert code == 0
    rows = table_rows(out)
    assert out.split()[:2] == ["NAMESPACE", "NAME"] and out.splitlines()[0].split()[-4:] == ["LOSS", "SEQ/S", "UPDATED", "AGE"]
    assert {(r["NAMESPACE"], r["NAME"]) for r in rows} >= {(NS, "run-1"), (NS, "failed-1"), (OTHER_NS, "elsewhere-1")}
    run = next(r for r in rows if r["NAME"] == "run-1")
    assert (run["LOSS"], run["SEQ/S"], run["UPDATED"]) == ("5.250", "312", "60m")
    code, out, _ = entry(capsys, jobs, "get", "run-1", "-n", NS, "-o", "json")
    assert code == 0 and json.loads(out)["status"]["currentStage"] == "phase2"
    code, out, _ = entry(capsys, jobs, "get", "-n", NS, "-o", "yaml")
    assert code == 0 and [i["metadata"]["name"] for i in yaml.safe_load(out)["items"]] == ["run-1", "failed-1"]
    code, _, err = entry(capsys, jobs, "get", "run-1", "-A")
    assert code == 2 and "-A/--all-namespaces" in err


def test_the_contexts_namespace_is_the_default(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = yaml.safe_load(jobs.kubeconfig.read_text())
    config["contexts"].append({"name": "team-b", "context": {"cluster": "kmock", "user": "tester", "namespace": OTHER_NS}})
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    code, out, _ = entry(capsys, None, "get", "--kubeconfig", str(path), "--context", "team-b")
    assert code == 0 and [r["NAME"] for r in table_rows(out)] == ["elsewhere-1"]
    code, _, err = entry(capsys, None, "--kubeconfig", str(path), "get", "--context", "nowhere")
    assert code == 2 and "--context: no context 'nowhere'" in err and "kmock, team-b" in err


def test_describe_shows_stages_conditions_events_results_and_locations(jobs: EmulatedCluster) -> None:
    answer = plugin(jobs, "describe", "run-1", "-n", NS)
    assert answer.returncode == 0, answer.stderr
    text = answer.stdout
    stages = text[text.index("Stages:"):text.index("Conditions:")]
    phase1 = next(line for line in stages.splitlines() if line.split()[:1] == ["phase1"])
    assert phase1.split()[1:3] == ["run-1-phase1", "Succeeded"] and phase1.split()[-3:] == ["1", "8", "12"]
    phase2 = next(line for line in stages.splitlines() if line.split()[:1] == ["phase2"])
    assert phase2.split()[-2:] == ["8", "running"]  # its open attempt is counted when it ends
    assert "phase1: last restart at" in stages and "Evicted: the node was drained" in stages
    assert "phase2" in stages and "run-1-phase2" in stages
    conditions = text[text.index("Conditions:"):text.index("Results:")]
    assert "MPIJobRunning" in conditions and "MPIJob ml-training/run-1-phase2 is running." in conditions
    assert "Progress:         94% phase2 4/10 loss 5.250 312 seq/s eta 1m15s" in text
    assert "finalLoss:        6.5" in text
    assert "s3://bert-demo/results/bert-tiny/phase1/export/savedmodel" in text
    artifacts = text[text.index("Artifacts:"):text.index("Resolved:")]
    assert [line.split()[:2] for line in artifacts.splitlines()[2:]] == [["phase1", "hf"], ["phase1", "savedmodel"]]
    assert "s3://bert-demo/records (endpoint http://minio.minio.svc:9000, credentials from Secret minio-credentials)" in text
    assert "s3://bert-demo/records/tiny/seq128" in text
    assert "prep-1" in text and "spec.dataset.fromJob" in text
    assert "team-defaults" in text and "spec.queueName" in text and "gpu-queue" in text
    events = text[text.index("Events:"):].splitlines()[2:]
    # Oldest first; an earlier job's Event of the same name is not this job's.
    assert [line.split()[1] for line in events] == ["Pending", "StageRestarted", "Running"]
    assert "an earlier job of this name failed" not in text


def test_get_wide_and_describe_show_a_served_jobs_inference_service(jobs: EmulatedCluster,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """status.serving (reconcile/serve_step.py) through the CRD's status schema: ready and URL in `get -o wide`, the
    InferenceService with the condition that says why in `describe`; KServe's texts escaped like every other."""
    serving = {"inferenceService": "served-1", "url": "http://served-1.ml-training.example.com", "ready": False,
               "reason": "PredictorReady: RevisionFailed: \x1b[2J0/3 nodes", "model": "mrpc", "modelVersion": "1 (glue)",
               "storageUri": "s3://bert-results/served-1/glue/export/triton",
               "conditions": [{"type": "PredictorReady", "status": "False", "reason": "RevisionFailed",
                               "message": "\x1b[2J0/3 nodes"}, {"type": "TransformerReady", "status": "True"}]}
    make_job(jobs, "served-1", {"phase": "Succeeded", "task": "squad", "serving": serving}, SQUAD)
    try:
        code, out, _ = entry(capsys, jobs, "get", "-n", NS, "-o", "wide")
        assert code == 0
        rows = {r["NAME"]: r for r in table_rows(out)}
        assert (rows["served-1"]["SERVING"], rows["served-1"]["URL"]) == ("NotReady", serving["url"])
        assert (rows["run-1"]["SERVING"], rows["run-1"]["URL"]) == ("", "")
        answer = plugin(jobs, "describe", "served-1", "-n", NS)
        assert answer.returncode == 0, answer.stderr
        section = answer.stdout[answer.stdout.index("Serving:"):answer.stdout.index("Events:")]
        assert "InferenceService: served-1" in section and f"URL:              {serving['url']}" in section
        assert "Ready:            False" in section and "Model:            mrpc 1 (glue)" in section
        assert "\x1b" not in answer.stdout and "PredictorReady: RevisionFailed:" in section
        assert "PredictorReady" in section.split("Storage:", 1)[1] and "TransformerReady" in section
        assert "Serving:            <none>" in plugin(jobs, "describe", "run-1", "-n", NS).stdout
    finally:
        jobs.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "served-1")


def test_logs_are_the_current_stages_newest_launcher(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = entry(capsys, jobs, "logs", "run-1", "-n", NS)
    assert code == 0 and out == "".join(f"phase2 step {i}\n" for i in range(1, 5))
    code, out, _ = entry(capsys, jobs, "logs", "run-1", "-n", NS, "--tail", "2")
    assert code == 0 and out == "phase2 step 3\nphase2 step 4\n"
    code, out, _ = entry(capsys, jobs, "logs", "run-1", "-n", NS, "--stage", "phase1")
    assert code == 0 and out == "phase1 step 90 loss 6.5\n"
    code, _, err = entry(capsys, jobs, "logs", "run-1", "-n", NS, "--stage", "phase3")
    assert code == 2 and "--stage: job run-1 has no stage 'phase3'; its stages: phase1, phase2" in err
    code, _, err = entry(capsys, jobs, "logs", "failed-1", "-n", NS)
    assert code == 1 and "no launcher pod for stage squad of job failed-1 yet" in err and "job phase Failed" in err


def printed(capsys: pytest.CaptureFixture[str], out: list[str]) -> str:
    """Everything printed since `out` was started: reading the capture empties it, so each read is kept in `out`."""
    out.append(capsys.readouterr().out)
    return "".join(out)


def test_logs_follow_streams_appended_lines(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    pod = "run-1-phase2-launcher-fghij"
    result: dict[str, int] = {}
    follower = threading.Thread(target=lambda: result.update(code=kubectl.main(
        ["logs", "run-1", "-n", NS, "-f", "--tail", "1", "--kubeconfig", str(jobs.kubeconfig)])))
    capsys.readouterr()
    follower.start()
    jobs.wait(lambda: any(r[0] == "GET" and r[1] == "pods" and r[4] == pod for r in jobs.requests()), what="the log request")
    out: list[str] = []
    jobs.wait(lambda: "phase2 step 4\n" in printed(capsys, out), what="the tail line (the stream is open)")
    jobs.write_pod_log(NS, pod, "phase2 step 5", "phase2 step 6")
    jobs.wait(lambda: "phase2 step 6\n" in printed(capsys, out), what="the appended lines")
    assert follower.is_alive()  # still following: the container has not ended
    jobs.end_pod_log(NS, pod)
    follower.join(timeout=10)
    assert not follower.is_alive() and result["code"] == 0
    assert printed(capsys, out) == "phase2 step 4\nphase2 step 5\nphase2 step 6\n"


def test_wait_returns_when_the_phase_changes_during_the_wait(jobs: EmulatedCluster) -> None:
    make_job(jobs, "wait-1", {"phase": "Running", "task": "squad", "model": "large", "workers": 1, "gpus": 4}, SQUAD)
    before = plugin_watches(jobs)
    waiting = subprocess.Popen([sys.executable, "-m", "bert_operator.kubectl", "wait", "wait-1", "-n", NS,
                                "--for=phase=Succeeded", "--timeout=60s", "--kubeconfig", str(jobs.kubeconfig)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        jobs.wait(lambda: plugin_watches(jobs) > before, what="the plugin's watch")
        assert waiting.poll() is None
        set_status(jobs, "wait-1", {"phase": "Succeeded"})
        out, err = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out.strip() == "berttrainingjob.bertoperator.io/wait-1 condition met (phase=Succeeded)"


def test_wait_times_out_with_exit_1(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, err = entry(capsys, jobs, "wait", "run-1", "-n", NS, "--for=phase=Succeeded", "--timeout=0.5s")
    assert code == 1 and 0.5 <= time.monotonic() - started < 10
    assert f"timed out after 0.5s waiting for {NS}/run-1 phase=Succeeded (phase now: Running)" in err


def test_wait_fails_at_once_on_another_terminal_phase(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, err = entry(capsys, jobs, "wait", "failed-1", "-n", NS, "--for=phase=Succeeded", "--timeout=60s")
    assert code == 1 and time.monotonic() - started < 10
    assert f"{NS}/failed-1 is Failed: MPIJobFailed: launcher exited 1: CUDA out of memory" in err
    code, out, _ = entry(capsys, jobs, "wait", "failed-1", "-n", NS, "--for=condition=Failed")
    assert code == 0 and "condition met (condition=Failed=True)" in out


def test_bad_for_exits_2_naming_the_option_and_the_phases(cluster: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        kubectl.main(["wait", "run-1", "--for=phase=Done"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "argument --for: unknown phase 'Done'" in err
    assert "allowed: " + ", ".join(JobPhase.__args__) in err
    with pytest.raises(SystemExit) as exited:
        kubectl.main(["wait", "run-1", "--for=status=Succeeded"])
    assert exited.value.code == 2 and "argument --for: 'status=Succeeded' is not understood" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        kubectl.main(["wait", "run-1", "--for=phase=Succeeded", "--timeout=ten"])
    assert exited.value.code == 2 and "argument --timeout: 'ten' is not a duration" in capsys.readouterr().err


def test_watch_prints_progress_lines_and_ends_on_succeeded(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(jobs, "watch-1", {"phase": "Running", "task": "squad", "model": "large", "workers": 1, "gpus": 4,
                               "currentStage": "squad"}, SQUAD)
    result: dict[str, int] = {}
    watcher = threading.Thread(target=lambda: result.update(code=kubectl.main(
        ["watch", "watch-1", "-n", NS, "--kubeconfig", str(jobs.kubeconfig)])))
    capsys.readouterr()
    before = plugin_watches(jobs)
    watcher.start()
    jobs.wait(lambda: plugin_watches(jobs) > before, what="the plugin's watch")
    out: list[str] = []
    for step in (10, 20):
        set_status(jobs, "watch-1", {"progress": {"stage": "squad", "step": step, "totalSteps": 40, "loss": 1.5,
                                                  "sequencesPerSecond": 80.0, "etaSeconds": 30.0,
                                                  "percent": step * 100 // 40, "display": f"{step * 100 // 40}% squad"}})
        jobs.wait(lambda step=step: f" {step}/40 " in printed(capsys, out), what=f"the line of step {step}")
    assert watcher.is_alive()
    set_status(jobs, "watch-1", {"phase": "Succeeded"})
    watcher.join(timeout=10)
    assert not watcher.is_alive() and result["code"] == 0
    lines = printed(capsys, out).splitlines()
    assert lines[0] == "watch-1: Running squad"
    assert "watch-1: Running 25% squad 10/40 loss 1.500 80 seq/s eta 30s" in lines
    assert "watch-1: Running 50% squad 20/40 loss 1.500 80 seq/s eta 30s" in lines
    assert lines[-1].startswith("watch-1: Succeeded") and len(lines) == len(set(lines))


def test_watch_of_a_failed_job_exits_1(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = entry(capsys, jobs, "watch", "failed-1", "-n", NS)
    assert code == 1 and out.startswith("failed-1: Failed") and "MPIJobFailed: launcher exited 1" in err


@pytest.mark.parametrize("command", [["get", "nosuch-1"], ["describe", "nosuch-1"], ["logs", "nosuch-1"],
                                     ["wait", "nosuch-1", "--for=phase=Succeeded"], ["watch", "nosuch-1"]])
def test_no_such_job_exits_1_naming_it(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = entry(capsys, jobs, *command, "-n", NS)
    assert code == 1 and err == f"error: no BertTrainingJob 'nosuch-1' in namespace '{NS}'\n" and out == ""


def test_api_refusals_and_an_unreachable_server_are_one_line(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    def forbidden(request: kmock.Request) -> bool:
        return request.method == "GET" and "berttrainingjobs/secret-1" in str(request.url)

    async def install() -> None:
        jobs.emulator[forbidden] << kmock.KubernetesError(
            status=403, reason="Forbidden", message='berttrainingjobs.bertoperator.io "secret-1" is forbidden: '
                                                    'User "tester" cannot get resource "berttrainingjobs"')

    jobs.call(install)
    code, _, err = entry(capsys, jobs, "describe", "secret-1", "-n", NS)
    assert code == 1 and err.count("\n") == 1 and "Forbidden (403)" in err and 'User "tester" cannot get' in err
    config = yaml.safe_load(jobs.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    code, _, err = entry(capsys, None, "get", "--kubeconfig", str(path))
    assert code == 1 and err.count("\n") == 1 and "cannot reach the API server" in err and "connection refused" in err
    assert "test-token" not in err and "Traceback" not in err


def test_the_operators_own_job_through_wait_and_describe(cluster: EmulatedCluster,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The real operator makes the status and Events; the plugin waits on them and shows them."""
    with OperatorProcess(cluster, "--namespace", OPERATOR_NS):
        body = copy.deepcopy(SQUAD)
        body["metadata"] = {"name": "op-1", "namespace": OPERATOR_NS}
        cluster.apply_job(body, uid="uid-op-1")
        waiting = subprocess.Popen([sys.executable, "-m", "bert_operator.kubectl", "wait", "op-1", "-n", OPERATOR_NS,
                                    "--for=phase=Running", "--timeout=60s", "--kubeconfig", str(cluster.kubeconfig)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            cluster.wait(lambda: (cluster.job(OPERATOR_NS, "op-1").get("status") or {}).get("phase") == "Pending",
                         what="the operator's Pending")
            assert waiting.poll() is None
            cluster.set_mpijob_conditions(OPERATOR_NS, "op-1-squad", "Created", "Running")
            out, err = waiting.communicate(timeout=30)
        finally:
            waiting.kill()
        assert waiting.returncode == 0, err
        assert "op-1 condition met (phase=Running)" in out
        cluster.wait(lambda: any(e["reason"] == "Running" and e["involved_object"]["name"] == "op-1" for e in cluster.events()),
                     what="the Running Event")
        code, text, err = entry(capsys, cluster, "describe", "op-1", "-n", OPERATOR_NS)
    assert code == 0, err
    assert "Phase:            Running" in text and "Task:             squad" in text
    stage = next(line for line in text[text.index("Stages:"):].splitlines() if line.split()[:1] == ["squad"])
    assert stage.split()[1:3] == ["op-1-squad", "Running"]
    reasons = [line.split()[1] for line in text[text.index("Events:"):].splitlines()[2:]]
    assert reasons[0] == "Pending" and "Running" in reasons
    assert all(line.split()[3] == "bert-operator" for line in text[text.index("Events:"):].splitlines()[2:])


def test_bertjob_has_the_same_commands(jobs: EmulatedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    from bert_operator import cli

    assert cli.main(["get", "run-1", "-n", NS, "--kubeconfig", str(jobs.kubeconfig)]) == 0
    assert table_rows(capsys.readouterr().out)[0]["STAGE"] == "phase2"
    assert cli.main(["logs", "run-1", "-n", NS, "--stage", "phase1", "--kubeconfig", str(jobs.kubeconfig)]) == 0
    assert capsys.readouterr().out == "phase1 step 90 loss 6.5\n"
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("bertjob ")


# ------------------------------------------------------- hostile and mistyped status: escaped, never a traceback

#: What a trainer error line, a report or an Event may hold: an OSC title, a screen clear, a carriage return, a
#: C1 CSI, a right-to-left override.
HOSTILE = "\x1b]0;owned\x07\x1b[2J\rX\x9b31m\u202eY"
#: How it reads once escaped: every control visible, nothing acted on.
ESCAPED = "\\x1b]0;owned\\x07\\x1b[2J\\rX\\x9b31m\\u202eY"
#: Every C0 and C1 control but newline and tab (and DEL): none of them may reach the terminal.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_escaped(text: str) -> None:
    found = CONTROLS.search(text)
    assert found is None, f"control {found.group()!r} printed raw in {text!r}"


def test_hostile_text_is_escaped_in_describe_get_wait_watch_and_logs(jobs: EmulatedCluster,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    status = {"phase": "Failed", "task": "pretrain", "model": "custom", "workers": 1, "gpus": 1, "currentStage": "phase1",
              "stages": [{"name": "phase1", "mpiJob": "hostile-1-phase1", "phase": "Failed",
                          "lastRestartReason": HOSTILE}],
              "conditions": [new_condition("Failed", "True", "MPIJobFailed", f"launcher exited 1: {HOSTILE}")],
              "progress": {"stage": "phase1", "step": 1, "totalSteps": 2, "percent": 50, "display": f"50% {HOSTILE}"},
              "results": {"error": HOSTILE, HOSTILE: 1,
                          "artifacts": [{"stage": "phase1", "format": "hf", "uri": f"s3://b/{HOSTILE}"}]},
              "resolved": {"output": {"uri": f"s3://b/{HOSTILE}"}, "dataPaths": [HOSTILE]}}
    make_job(jobs, "hostile-1", status)
    post_event(jobs, "hostile-1", "uid-hostile-1", "Failed", f"the trainer said {HOSTILE}", ago(10), "Warning")
    make_pod(jobs, "hostile-1-phase1-launcher-x", "hostile-1", "phase1", "launcher", ago(100))
    jobs.write_pod_log(NS, "hostile-1-phase1-launcher-x", f"before {HOSTILE} after", "next\tline")
    printed: dict[str, str] = {}
    for command in (["describe", "hostile-1"], ["get"], ["get", "hostile-1", "-o", "wide"], ["get", "-o", "yaml"],
                    ["get", "hostile-1", "-o", "json"], ["wait", "hostile-1", "--for=phase=Succeeded"],
                    ["watch", "hostile-1"], ["logs", "hostile-1"]):
        _, out, err = entry(capsys, jobs, *command, "-n", NS)
        assert_escaped(out + err)
        printed[" ".join(command)] = out + err
    assert printed["describe hostile-1"].count(ESCAPED) >= 7  # condition, restart, results key and value, URIs, Event
    assert ESCAPED in printed["get"] and ESCAPED in printed["wait hostile-1 --for=phase=Succeeded"]
    assert ESCAPED in printed["watch hostile-1"]
    assert printed["logs hostile-1"] == f"before {ESCAPED} after\nnext\tline\n"  # newlines and tabs kept
    # -o yaml / -o json: the text itself, written in the format's own escapes (which a parser reads back).
    listed = next(i for i in yaml.safe_load(printed["get -o yaml"])["items"] if i["metadata"]["name"] == "hostile-1")
    assert listed["status"]["results"]["error"] == HOSTILE
    assert json.loads(printed["get hostile-1 -o json"])["status"]["results"]["error"] == HOSTILE


def _base_job() -> dict[str, Any]:
    status = running_status()
    status["conditions"].append(new_condition("Failed", "True", "MPIJobFailed", "launcher exited 1"))
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BertTrainingJob",
            "metadata": {"name": "odd-1", "namespace": NS, "uid": "uid-odd-1", "creationTimestamp": ago(900)},
            "spec": copy.deepcopy(TINY["spec"]), "status": status}


def _base_events() -> list[dict[str, Any]]:
    return [{"type": "Warning", "reason": "Failed", "message": "launcher exited 1", "count": 2,
             "source": {"component": "bert-operator"}, "lastTimestamp": ago(30),
             "involvedObject": {"kind": "BertTrainingJob", "name": "odd-1", "uid": "uid-odd-1"}}]


#: Every part of a status (and of an Event) that describe, get, watch, wait and logs read.
STATUS_PATHS = [
    ("status",), *[("status", key) for key in ("phase", "task", "model", "workers", "gpus", "currentStage", "startTime",
                                               "completionTime", "stages", "conditions", "progress", "results",
                                               "resolved", "dependencies", "policy")],
    ("status", "stages", 0), *[("status", "stages", 0, key) for key in (
        "name", "mpiJob", "phase", "startTime", "restarts", "gpus", "gpuHours", "runningSince", "lastRestartReason",
        "lastRestartTime")],
    ("status", "conditions", 3), *[("status", "conditions", 3, key) for key in ("type", "status", "reason", "message")],
    *[("status", "progress", key) for key in ("stage", "step", "totalSteps", "loss", "sequencesPerSecond",
                                              "etaSeconds", "percent", "updatedAt", "display")],
    ("status", "results", "artifacts"), ("status", "results", "artifacts", 0), ("status", "results", "artifacts", 0, "uri"),
    ("status", "results", "finalLoss"),
    ("status", "resolved", "dataset"), ("status", "resolved", "dataset", "uri"), ("status", "resolved", "output"),
    ("status", "resolved", "dataPaths"), ("status", "resolved", "dataPaths", 0), ("status", "resolved", "vocab"),
    ("status", "dependencies", 0), ("status", "dependencies", 0, "fields"), ("status", "dependencies", 0, "name"),
    ("status", "policy", "policies"), ("status", "policy", "applied"), ("status", "policy", "applied", 0),
    ("status", "policy", "applied", 0, "value"), ("metadata", "creationTimestamp"),
    ("events",), ("events", 0), *[("events", 0, key) for key in ("count", "source", "lastTimestamp", "message", "type")],
]
#: Wrong types and values out of range: what a stale CRD, another writer or a hostile report can leave there.
MISTYPED = [5, -1, "text", HOSTILE, [1, "a"], {"k": [1]}, True, 10 ** 30, float("nan"), float("inf")]


@pytest.mark.parametrize("path", STATUS_PATHS, ids=lambda path: ".".join(map(str, path)))
def test_a_mistyped_status_field_is_shown_invalid_or_skipped_never_a_traceback(path: tuple[Any, ...]) -> None:
    from bert_operator.kubectl import describe, logs, tables, wait, watch
    import io

    for bad in MISTYPED:
        document = {**_base_job(), "events": _base_events()}
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = bad
        job, events = {k: v for k, v in document.items() if k != "events"}, document["events"]
        shown = [describe.describe(job, events if isinstance(events, list) else []), tables.table([job]),
                 tables.table([job], wide=True), watch.status_line("odd-1", job["status"]), wait.failure_text(job)]
        for interactive in (False, True):
            stream = io.StringIO()
            view = watch.ProgressView("odd-1", stream, interactive=interactive)
            view.update(job["status"])
            view.close()
            shown.append(stream.getvalue().replace("\r", ""))  # the bar's own carriage returns
        for goal in (wait.Goal("phase", "Succeeded"), wait.Goal("condition", "Ready")):
            goal.met(job)
        try:
            logs.pick_stage(job, None)
        except kubectl.client.PluginError:
            pass  # no stage to show: one line, as for a job without stages
        for text in shown:
            assert_escaped(text)
    if path == ("status", "results", "artifacts"):
        assert "Artifacts:          <invalid>" in shown[0]
