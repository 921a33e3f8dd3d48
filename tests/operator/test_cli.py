"""`bertjob` as a user runs it: real subprocesses, exit codes and messages."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.schemas import mpijob_errors

PRETRAIN = REPO / "examples" / "bert-large-pretrain.yaml"


def bertjob(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bert_operator.cli", *args],
        input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60,
    )


def test_validate_reports_each_job() -> None:
    result = bertjob("validate", str(PRETRAIN), "examples/squad-v1.1.yaml")
    assert result.returncode == 0, result.stderr
    assert "ml-training/bert-large-lamb is a valid pretrain job" in result.stdout
    assert "ml-training/squad-large is a valid squad job" in result.stdout


def test_render_yaml_gives_one_mpijob_per_phase() -> None:
    result = bertjob("render", str(PRETRAIN))
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in documents] == ["bert-large-lamb-phase1", "bert-large-lamb-phase2"]
    assert all(mpijob_errors(d) == [] for d in documents)


def test_render_json_and_stdin() -> None:
    result = bertjob("render", "-", "-o", "json", stdin=(REPO / "examples" / "glue-mrpc.yaml").read_text())
    assert result.returncode == 0, result.stderr
    mpijob = json.loads(result.stdout)
    assert mpijob["kind"] == "MPIJob" and mpijob["metadata"]["name"] == "glue-mrpc-glue"


def test_render_multi_document_file(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(PRETRAIN.read_text() + "\n---\n" + (REPO / "examples" / "squad-v1.1.yaml").read_text())
    result = bertjob("render", str(both), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [i["metadata"]["name"] for i in json.loads(result.stdout)["items"]] == [
        "bert-large-lamb-phase1", "bert-large-lamb-phase2", "squad-large-squad",
    ]


def test_bad_field_exits_2_with_path_and_no_traceback(tmp_path: Path) -> None:
    document = yaml.safe_load(PRETRAIN.read_text())
    document["spec"]["resources"]["gpusPerWorker"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    for command in ("validate", "render"):
        result = bertjob(command, str(bad))
        assert result.returncode == 2
        assert result.stderr.strip() == f"{bad}: spec.resources.gpusPerWorker: must be >= 0, got -1"
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_invalid_yaml_and_missing_file_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec:\n  task: [\n")
    result = bertjob("validate", str(broken))
    assert result.returncode == 2 and "invalid YAML at line" in result.stderr
    missing = bertjob("render", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"bertjob: {tmp_path / 'nope.yaml'}: no such file"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    result = bertjob("validate", str(binary))
    assert result.returncode == 2 and "not UTF-8 text" in result.stderr and "Traceback" not in result.stderr


def test_crd_command_prints_the_checked_in_crd() -> None:
    result = bertjob("crd")
    assert result.returncode == 0
    assert result.stdout == (REPO / "manifests" / "crd.yaml").read_text()


def test_crd_policy_prints_the_checked_in_policy_crd() -> None:
    result = bertjob("crd", "--policy")
    assert result.returncode == 0
    assert result.stdout == (REPO / "manifests" / "policy-crd.yaml").read_text()


def test_usage_error_exits_2() -> None:
    result = bertjob("render")
    assert result.returncode == 2 and "usage: bertjob render" in result.stderr


def test_operator_refuses_unusable_settings_before_connecting(tmp_path: Path) -> None:
    import os

    def operator(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bert_operator.cli", "operator", *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=60,
                              env={**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig"), **env})

    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    cases = [
        (operator("--progress-port", str(taken)), f"--progress-port: port {taken} cannot be served (Address already in use)"),
        (operator(BERTOP_WEBHOOK_PORT="abc"), "BERTOP_WEBHOOK_PORT: must be an integer, got 'abc'"),
        (operator(BERTOP_RESYNC_SECONDS="soon"), "BERTOP_RESYNC_SECONDS: must be a number, got 'soon'"),
        (operator("--metrics-port", "70000"), "--metrics-port: must be a port from 0 to 65535, got 70000"),
        (operator(BERTOP_NCCL_DEBUG="LOUD"), "BERTOP_NCCL_DEBUG: must be one of VERSION, WARN, INFO, TRACE, got 'LOUD'"),
        (operator("--restart-backoff-seconds", "0"), "--restart-backoff-seconds (BERTOP_RESTART_BACKOFF_SECONDS): must be positive, got 0"),
        (operator(BERTOP_RESTART_BACKOFF_MAX_SECONDS="soon"), "BERTOP_RESTART_BACKOFF_MAX_SECONDS: must be a number, got 'soon'"),
        (operator("--progress-cert-dir", str(tmp_path)), f"--progress-cert-dir (BERTOP_PROGRESS_CERT_DIR): {tmp_path / 'tls.crt'}: no such file"),
        (operator("--webhook-port", "9443", "--webhook-cert-dir", str(tmp_path)),
         f"--webhook-cert-dir (BERTOP_WEBHOOK_CERT_DIR): {tmp_path / 'tls.crt'}: no such file"),
        (operator("--liveness-port", "0", "--metrics-port", "0"), "--kubeconfig: no cluster to connect to"),
    ]
    for result, message in cases:
        assert result.returncode == 2, result.stderr[-2000:]
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    busy.close()


def test_the_repository_root_shadows_no_standard_library_module() -> None:
    """operator/ holds the package bert_operator, so `python -m` from the root sees the real stdlib `operator`."""
    script = "import operator, bert_operator, bert_trainer; print(operator.add(2, 3), bert_operator.__file__)"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "5" and result.stdout.split()[1].endswith("operator/bert_operator/__init__.py")
    crd = subprocess.run([sys.executable, "-m", "bert_operator.cli", "crd"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert crd.returncode == 0 and "kind: CustomResourceDefinition" in crd.stdout, crd.stderr


#: The billion laughs in 1 KB (nine levels of nine aliases: 9**9 strings once expanded), inside a field that
#: takes any mapping, in an otherwise valid job: what a validator walking the value never finishes.
ALIAS_BOMB = PRETRAIN.read_text().replace("  resources:\n", "  resources:\n    affinity: {" + ", ".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{level}: &{level} [{','.join([f'*{below}'] * 9)}]" for below, level in zip("abcdefgh", "bcdefghi")]) + "}\n", 1)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("alias bomb", ALIAS_BOMB, "the document expands to more than 20000 values"),
    ("500 levels of flow nesting", "spec: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than 256 levels"),
    ("a 4301-digit integer", "spec: {resources: {workers: " + "9" * 4301 + "}}\n", "an integer of 4301 digits"),
    ("a key written twice", PRETRAIN.read_text().replace("  task:\n", "  xla: true\n  xla: false\n  task:\n", 1),
     "key 'xla' appears twice in one mapping"),
])
@pytest.mark.parametrize("command", ["validate", "render"])
def test_hostile_yaml_is_refused_with_where_and_no_traceback(command: str, name: str, text: str, message: str) -> None:
    result = bertjob(command, "-", stdin=text)
    assert result.returncode == 2, result.stderr[-500:]
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr[-500:]
    assert "<stdin>: <yaml>: invalid YAML at line " in result.stderr or "-: <yaml>: invalid YAML at line " in result.stderr
    assert len(result.stderr) < 2000  # the value is not echoed back


def test_an_integer_beyond_int64_is_refused_naming_its_field() -> None:
    result = bertjob("validate", "-", stdin=PRETRAIN.read_text().replace("workers: 4", "workers: " + "9" * 400, 1))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "spec.resources.workers: must fit in a 64-bit integer (at most 19 digits)" in result.stderr


# ------------------------------------------------------------------ policies (issue 25, "the CLI as people use it")

POLICIES = [str(REPO / "examples" / "policy-team-a.yaml"), str(REPO / "examples" / "policy-cluster-defaults.yaml")]
TEAM_A_NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {bertoperator.io/team: team-a}\n"


def in_team_a(name: str, tmp_path: Path, drop_output: bool = False) -> Path:
    """An example job moved into namespace team-a (without its output: the team's policy gives one)."""
    documents = list(yaml.safe_load_all((REPO / "examples" / name).read_text()))
    for document in documents:
        document["metadata"]["namespace"] = "team-a"
        if drop_output:
            del document["spec"]["output"]
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from bert_operator.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_the_projects_own_policy_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "validate", *POLICIES)
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{POLICIES[0]}: team-a is a valid BertTrainingPolicy",
                                f"{POLICIES[1]}: cluster-defaults is a valid BertTrainingPolicy"]
    broken = yaml.safe_load(Path(POLICIES[0]).read_text())
    broken["spec"]["limits"]["maxCpuPerJob"] = "lots"
    bad = tmp_path / "bad-policy.yaml"
    bad.write_text(yaml.safe_dump(broken))
    code, out, err = run_main(capsys, "validate", str(bad))
    assert (code, out) == (2, "") and err.startswith(f"{bad}: spec.limits.maxCpuPerJob: must be a Kubernetes quantity"), err


def test_validate_with_policy_shows_what_the_policies_set_and_refuses_every_violation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bert_operator.policy import decide, parse_policy

    namespaces = tmp_path / "namespaces.yaml"
    namespaces.write_text(TEAM_A_NAMESPACE)
    policy_args = [arg for path in [*POLICIES, str(namespaces)] for arg in ("--policy", path)]
    glue = in_team_a("glue-mrpc.yaml", tmp_path, drop_output=True)
    code, out, err = run_main(capsys, "validate", *policy_args, str(glue))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{glue}: team-a/glue-mrpc is a valid glue job under BertTrainingPolicy cluster-defaults, team-a"
    assert '  spec.output.uri = "s3://bert-results/team-a/glue-mrpc" (default, team-a)' in lines
    assert '  spec.queueName = "team-a" (forced, team-a)' in lines

    # The 4 x 8 job: every line decide() gives the webhook and the operator, with the file and the job, exit 2.
    large = in_team_a("bert-large-pretrain.yaml", tmp_path)
    code, out, err = run_main(capsys, "validate", *policy_args, str(large))
    policies = [parse_policy(yaml.safe_load(Path(path).read_text())) for path in POLICIES]
    labels = {"bertoperator.io/team": "team-a", "kubernetes.io/metadata.name": "team-a"}
    expected = decide(yaml.safe_load(large.read_text()), labels, policies).violations
    assert (code, out) == (2, "") and len(expected) == 8
    assert err.splitlines() == [f"{large}: bert-large-lamb: {error}" for error in expected]

    # The labels on the command line instead; without them no team policy selects the namespace, and it says so.
    code, out, err = run_main(capsys, "validate", "--policy", POLICIES[0], "--namespace-labels",
                              "bertoperator.io/team=team-a", str(glue))
    assert code == 0 and "under BertTrainingPolicy team-a" in out
    code, out, err = run_main(capsys, "validate", "--policy", POLICIES[0], str(in_team_a("squad-v1.1.yaml", tmp_path)))
    assert code == 0 and out.endswith("no BertTrainingPolicy selects namespace team-a (no labels given "
                                      "(--namespace-labels, or a Namespace document in the policy file))\n")


def test_render_with_policy_renders_the_job_the_operator_would_and_jobs_shows_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    glue = in_team_a("glue-mrpc.yaml", tmp_path, drop_output=True)
    team = ["--policy", POLICIES[0], "--namespace-labels", "bertoperator.io/team=team-a"]
    code, out, _ = run_main(capsys, "render", *team, str(glue))
    [mpijob] = yaml.safe_load_all(out)
    assert code == 0 and mpijob_errors(mpijob) == []
    assert mpijob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["priorityClassName"] == "team-a-training"
    assert worker["containers"][0]["resources"]["limits"]["cpu"] == "16"
    code, out, _ = run_main(capsys, "render", *team, "--jobs", str(glue))
    job = yaml.safe_load(out)
    assert job["spec"]["output"]["uri"] == "s3://bert-results/team-a/glue-mrpc" and job["spec"]["queueName"] == "team-a"
    assert "maxRestarts" not in job["spec"].get("runPolicy", {})  # the written spec and the policies' values only
    assert {"path": "spec.queueName", "value": "team-a", "how": "forced", "policy": "team-a"} in \
        job["status"]["policy"]["applied"]


def test_a_reference_is_judged_where_it_resolves_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each job may read only its own results here ({name}): bert-squad reading bert-pretrain's checkpoint is refused,
    naming the reference, as the operator refuses it once it resolves."""
    policy = tmp_path / "own.yaml"
    policy.write_text(yaml.safe_dump({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                                      "metadata": {"name": "own"}, "spec": {"limits": {
                                          "allowedReadPrefixes": ["s3://bert-data/", "s3://bert-models/"],
                                          "allowedOutputPrefixes": ["s3://bert-results/{name}", "s3://bert-data/tfrecord"]}}}))
    code, out, err = run_main(capsys, "validate", "--policy", str(policy), str(REPO / "examples" / "bert-end-to-end.yaml"))
    assert code == 2
    assert err.splitlines() == [
        f"{REPO / 'examples' / 'bert-end-to-end.yaml'}: {name}: spec.model.initCheckpointFrom.fromJob: BertTrainingJob "
        f"bert-pretrain gives 's3://bert-results/bert-pretrain/{stage}', which is not under a location allowed by "
        f"BertTrainingPolicy own: s3://bert-data/, s3://bert-models/, s3://bert-results/{name}, s3://bert-data/tfrecord"
        for name, stage in (("bert-squad", "phase2"), ("bert-mrpc", "phase2"))]


def test_policy_options_refuse_bad_input_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = str(REPO / "examples" / "glue-mrpc.yaml")
    cases = [
        (("validate", "--namespace-labels", "team=a", job), "--namespace-labels: only with --policy"),
        (("render", "--policy", POLICIES[0], "--namespace-labels", "team", job), "expected KEY=VALUE"),
        (("validate", "--policy", job, job), "a policy file holds BertTrainingPolicy and Namespace documents"),
        (("validate", "--policy", str(tmp_path / "none.yaml"), job), "none.yaml: no such file"),
    ]
    for args, message in cases:
        try:
            code, _, err = run_main(capsys, *args)
        except SystemExit as stopped:  # argparse's own refusal of an option's value
            code, err = stopped.code, capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err


def test_every_job_of_a_file_without_an_output_is_named_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No policy gives an output here: each job that lacks one is named in one run (only the first was before)."""
    documents = list(yaml.safe_load_all((REPO / "examples" / "bert-end-to-end.yaml").read_text()))
    for document in documents:
        document["spec"].pop("output", None)
    bare = tmp_path / "no-outputs.yaml"
    bare.write_text(yaml.safe_dump_all(documents))
    code, out, err = run_main(capsys, "validate", str(bare))
    assert code == 2 and out == ""
    named = [line for line in err.splitlines() if "spec.output.uri: required" in line]
    assert len(named) == len(documents) >= 2, err
