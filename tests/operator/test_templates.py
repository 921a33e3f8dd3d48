"""Job template overlays (bert_operator.templates): the merge, the examples a platform starts from (rendered, checked
against the real MPIJob CRD, Kubernetes' Pod schema and PodSecurity), and every refusal naming the overlay, its line
and the field, with nothing rendered."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

from bert_operator.api.parse import parse_text
from bert_operator.dependencies import resolve_file
from bert_operator.pod_security import check as pod_security
from bert_operator.render import render_all
from bert_operator.templates import TemplateInvalid, parse_overlay, render_with_overlays
from bert_operator.templates.merge import strategic_merge
from tests.conftest import REPO
from tests.schemas import mpijob_errors, pod_errors

TEMPLATES = REPO / "examples" / "templates"
#: Each example and the PodSecurity level its pods pass at (infiniband's IPC_LOCK, off by default, needs privileged).
EXAMPLES = {"efa": "restricted", "infiniband": "restricted", "fluent-bit-sidecar": "restricted",
            "dataset-cache-init": "restricted", "istio-off": "restricted"}


def jobs(name: str = "bertjob-tiny.yaml"):
    path = str(REPO / "examples" / name)
    return resolve_file(parse_text(Path(path).read_text(), path), path, need_all=True)


def overlay(text: str, source: str = "test.yaml"):
    return parse_overlay(text, source)


def example(name: str, **replace: str):
    text = (TEMPLATES / f"{name}.yaml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse_overlay(text, f"{name}.yaml")


def worker_pod(mpijob: dict) -> dict:
    return mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]


def container(pod: dict, name: str) -> dict:
    return next(c for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []) if c["name"] == name)


def test_the_merge_is_kubectls_strategic_merge_for_pod_lists():
    target = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}],
                                       "volumeMounts": [{"name": "v", "mountPath": "/v"}], "command": ["run", "it"]}],
                       "tolerations": [{"key": "k"}], "keep": 1, "drop": 2}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}],
                                      "volumeMounts": [{"name": "w", "mountPath": "/v", "readOnly": True}],
                                      "command": ["other"]},
                                     {"name": "b", "image": "y"}],
                      "tolerations": [{"key": "t"}], "drop": None}}
    merged = strategic_merge(target, patch)
    a, b = merged["spec"]["containers"]
    assert a["env"] == [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]  # merged by name
    assert a["volumeMounts"] == [{"name": "w", "mountPath": "/v", "readOnly": True}]  # merged by mountPath
    assert a["command"] == ["other"] and merged["spec"]["tolerations"] == [{"key": "t"}]  # replaced: no merge key
    assert b == {"name": "b", "image": "y"} and "drop" not in merged["spec"] and merged["spec"]["keep"] == 1
    assert target["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]  # the target is not changed


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_renders_and_passes_the_crd_the_pod_schema_and_pod_security(name):
    """On the tiny pipeline (three tasks) and BERT-Large pretraining (two phases, Kueue): each stage's MPIJob with the
    overlay is a valid MPIJob of the MPI Operator's CRD, each pod a valid core/v1 Pod, and the pods pass the level."""
    level = EXAMPLES[name]
    for job in [*jobs(), *jobs("bert-large-pretrain.yaml")]:
        plain = render_all(job)
        rendered = render_with_overlays(job, [example(name)], level=level)
        assert len(rendered) == len(plain) and rendered != plain
        for mpijob in rendered:
            assert mpijob_errors(mpijob) == [], (name, job.metadata.name)
            assert pod_errors(mpijob) == [], (name, job.metadata.name)
            for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
                template = replica["template"]
                assert pod_security(level, template["spec"], template["metadata"].get("annotations")) == []


def test_the_examples_do_what_they_say():
    job = jobs()[1]  # tiny-pretrain
    efa = render_with_overlays(job, [example("efa")])[0]
    worker = container(worker_pod(efa), "worker")
    assert worker["resources"]["limits"]["vpc.amazonaws.com/efa"] == 4 and "hugepages-2Mi" in worker["resources"]["requests"]
    launcher = efa["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    command = launcher["command"]
    # the variables reach the ranks: exported with -x, before mpirun's first -mca, and each once
    assert {"FI_PROVIDER", "NCCL_SOCKET_IFNAME"} <= {e["name"] for e in launcher["env"]}
    for name in ("FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "NCCL_PROTO"):
        at = command.index(name)
        assert command[at - 1] == "-x" and at < command.index("-mca") and command.count(name) == 1
    plain_command = render_all(job)[0]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    added = ("FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "FI_EFA_FORK_SAFE", "NCCL_PROTO", "NCCL_SOCKET_IFNAME")
    at = command.index(added[0]) - 1
    assert command[at:at + 10] == [flag for name in added for flag in ("-x", name)]
    assert command[:at] + command[at + 10:] == plain_command  # nothing else of the operator's command changed

    logs = render_with_overlays(job, [example("fluent-bit-sidecar")])[0]
    pod = worker_pod(logs)
    sidecar = container(pod, "fluent-bit")
    assert sidecar["securityContext"] == container(pod, "worker")["securityContext"]
    assert {"name": "training-logs", "mountPath": "/workspace/logs"} in container(pod, "worker")["volumeMounts"]
    assert {"name": "BERT_JOB", "value": job.metadata.name} in sidecar["env"]

    cache = render_with_overlays(job, [example("dataset-cache-init")])[0]  # the tiny job reads a claim: no sync
    assert [c["name"] for c in worker_pod(cache)["spec"]["initContainers"]] == ["warm-cache"]
    [synced, *_] = jobs("bert-large-pretrain.yaml")  # an S3 dataset: the operator's sync runs first
    cache = render_with_overlays(synced, [example("dataset-cache-init")])[0]
    assert [c["name"] for c in worker_pod(cache)["spec"]["initContainers"]] == ["sync-dataset", "warm-cache"]
    assert {"name": "dataset-cache", "mountPath": "/cache", "readOnly": True} in container(worker_pod(cache), "worker")["volumeMounts"]

    quiet = render_with_overlays(job, [example("istio-off")])[0]
    for replica in quiet["spec"]["mpiReplicaSpecs"].values():
        assert replica["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"

    # overlays compose, in order
    both = render_with_overlays(job, [example("efa"), example("istio-off")])[0]
    assert container(worker_pod(both), "worker")["resources"]["limits"]["vpc.amazonaws.com/efa"] == 4
    assert worker_pod(both)["metadata"]["annotations"]["linkerd.io/inject"] == "disabled"


def test_ipc_lock_passes_only_at_privileged():
    job = jobs()[1]
    locked = example("infiniband", **{"ipcLock: false": "ipcLock: true"})
    for level in ("restricted", "baseline"):
        with pytest.raises(TemplateInvalid) as failed:
            render_with_overlays(job, [locked], level=level)
        assert failed.value.overlay == "infiniband" and "IPC_LOCK" in str(failed.value)
        assert failed.value.field.endswith("securityContext.capabilities.add")
        text = (TEMPLATES / "infiniband.yaml").read_text().splitlines()
        assert "add: [IPC_LOCK]" in text[failed.value.line - 1]  # the line of the file that set it
    [mpijob, *_] = render_with_overlays(job, [locked], level="privileged")
    assert container(worker_pod(mpijob), "worker")["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]


PATCH_HEAD = """name: bad
version: "1"
patch: |
  spec:
    mpiReplicaSpecs:
      Worker:
        template:
          spec:
"""


@pytest.mark.parametrize("body,field,reason,line", [
    ("            containers:\n              - name: worker\n                image: evil/miner:latest\n",
     "containers[0].image", "cannot change it", 11),
    ("            containers:\n              - name: worker\n                command: [sh]\n",
     "containers[0].command", "cannot change it", 11),
    ("            containers:\n              - name: miner\n                image: x/y\n"
     "                resources: {limits: {nvidia.com/gpu: 8}}\n", "resources.limits.nvidia.com/gpu", "accelerators", 12),
    ("            volumes:\n              - name: root\n                hostPath: {path: /}\n",
     "volumes[", "hostPath", 10),
    ("            securityContext: null\n", "spec.securityContext", "cannot remove it", 9),
    ("            hostNetwork: true\n", "spec.hostNetwork", "host namespaces", 9),
    ("            containers:\n              - name: worker\n                securityContext:\n"
     "                  privileged: true\n", "securityContext.privileged", "privileged", 12),
], ids=["image", "command", "gpu", "hostPath", "remove", "hostNetwork", "privileged"])
def test_an_overlay_that_changes_the_operators_pods_or_breaks_pod_security_is_refused_naming_its_line(
        body, field, reason, line):
    bad = overlay(PATCH_HEAD + body)
    with pytest.raises(TemplateInvalid) as failed:
        render_with_overlays(jobs()[1], [bad])
    error = failed.value
    assert error.overlay == "bad" and field in error.field and reason in str(error), str(error)
    assert error.line == line, str(error)
    assert str(error).startswith(f"template bad, line {line} (patch line {line - 3}): spec.mpiReplicaSpecs.Worker")


def test_an_added_image_must_match_the_policys_allowed_images():
    sidecar = overlay(PATCH_HEAD + "            containers:\n              - name: side\n                image: "
                                   "docker.io/random/tool:1\n                securityContext: "
                                   "{{ base.container_security | tojson }}\n")
    job = jobs()[1]
    assert render_with_overlays(job, [sidecar])  # no policy limit: any image
    with pytest.raises(TemplateInvalid, match="not allowed by the policy") as failed:
        render_with_overlays(job, [sidecar], allowed_images=[["registry.example.com/*"]])
    assert failed.value.field.endswith("containers[1].image") and failed.value.line == 11
    assert render_with_overlays(job, [sidecar], allowed_images=[["docker.io/random/*", "x/*"]])
    with pytest.raises(TemplateInvalid, match="not allowed by the policy"):  # every policy's list must allow it
        render_with_overlays(job, [sidecar], allowed_images=[["docker.io/random/*"], ["registry.example.com/*"]])


@pytest.mark.parametrize("text,where,message", [
    ("name: x\nversion: '1'\npatch: |\n  spec:\n    a: {{ values.nope }}\n", (5, 2), "has no attribute 'nope'"),
    ("name: x\nversion: '1'\npatch: |\n  spec:\n    a: {% if %}\n", (5, 2), "Jinja: Expected an expression"),
    ("name: x\nversion: '1'\npatch: |\n  spec:\n    a: [1, 2\n", (6, 3), "not YAML"),  # YAML marks the end
    ("name: x\nversion: '1'\npatch: |\n  {{ ''.__class__ }}\n", (4, 1), "unsafe"),
    ("name: x\nversion: '1'\npatch: |\n  - a\n", (4, 1), "must be a mapping"),
    ("name: X_Y\nversion: '1'\npatch: a\n", (1, None), "DNS label"),
    ("name: x\nversion: '1'\npatch: a\nimage: y\n", (4, None), "unknown field(s) ['image']"),
    ("name: x\nversion: 'a b'\npatch: a\n", (2, None), "version"),
    ("name: x\nversion: '1'\n", (None, None), "patch: must be the patch's Jinja text"),
    ("[1, 2", (2, None), "not YAML"),
], ids=["undefined", "syntax", "yaml", "sandbox", "not-a-mapping", "name", "unknown", "version", "no-patch", "file"])
def test_a_broken_overlay_is_refused_naming_its_line(text, where, message):
    with pytest.raises(TemplateInvalid) as failed:
        render_with_overlays(jobs()[1], [overlay(text)])
    assert message in str(failed.value)
    assert (failed.value.line, failed.value.patch_line) == where, str(failed.value)


def test_values_are_declared_bounded_and_overridable_by_name_only():
    efa = example("efa")
    job = jobs()[1]
    from bert_operator.templates import apply_overlays, overlay_context
    from bert_operator.render import render_mpijob
    from bert_operator.render.values import RenderSettings, template_values
    from bert_operator.tasks import stages_of

    stage = stages_of(job.spec)[0]
    context = overlay_context(job, stage, template_values(job, stage, RenderSettings()))
    base = render_mpijob(job, stage)
    mpijob = apply_overlays(base, [efa], context, values={"efa": {"efaPerWorker": 32}})
    assert container(worker_pod(mpijob), "worker")["resources"]["limits"]["vpc.amazonaws.com/efa"] == 32
    with pytest.raises(TemplateInvalid, match=r"values \['efaPerGpu'\] are not declared"):
        apply_overlays(base, [efa], context, values={"efa": {"efaPerGpu": 1}})
    with pytest.raises(TemplateInvalid, match="over 65536 characters"):
        overlay("name: x\nversion: '1'\npatch: |\n" + "  # padding\n" * 7000)


def bertjob(capsys, *args: str) -> subprocess.CompletedProcess[str]:
    """`bertjob ARGS` in this process: its exit status and what it printed."""
    from bert_operator.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_the_cli_renders_and_validates_with_templates(capsys):
    run_cli = functools.partial(bertjob, capsys)
    tiny = str(REPO / "examples" / "bertjob-tiny.yaml")
    done = run_cli("render", tiny, "--template", str(TEMPLATES / "efa.yaml"), "--template",
                   str(TEMPLATES / "istio-off.yaml"))
    stages = done.stdout.count("kind: MPIJob")
    assert done.returncode == 0 and stages >= 3 and done.stdout.count("vpc.amazonaws.com/efa") == 2 * stages
    assert "sidecar.istio.io/inject" in done.stdout
    done = run_cli("validate", tiny, "--template", str(TEMPLATES / "infiniband.yaml"))
    assert done.returncode == 0 and "renders with templates infiniband@1" in done.stdout
    bad = REPO / "examples" / "templates" / "efa.yaml"
    done = run_cli("validate", tiny, "--template", str(bad), "--template", str(bad))
    assert done.returncode == 2 and "two files name the same overlay" in done.stderr


def test_the_cli_refuses_a_bad_overlay_with_exit_2_and_one_escaped_line(capsys, tmp_path):
    run_cli = functools.partial(bertjob, capsys)
    path = tmp_path / "bad.yaml"
    path.write_text(PATCH_HEAD + "            containers:\n              - name: \"side\\e[31m\"\n"
                                 "                image: x\n                securityContext: {privileged: true}\n")
    done = run_cli("validate", str(REPO / "examples" / "bertjob-tiny.yaml"), "--template", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "template bad, line 12 (patch line 9)" in done.stderr and "privileged" in done.stderr
    assert "\x1b" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_rank_can_log_to_a_file_for_a_log_shipper(tmp_path, monkeypatch):
    import logging

    from bert_trainer.log_file import add_log_file

    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        path = add_log_file(str(tmp_path / "logs" / "rank-{rank}.log"), logging.Formatter("%(message)s"))
        assert path == str(tmp_path / "logs" / "rank-3.log")
        logging.getLogger("bert_trainer.test").warning("event=hello")
        for handler in root.handlers:
            handler.flush()
        assert (tmp_path / "logs" / "rank-3.log").read_text() == "event=hello\n"
        assert add_log_file("/proc/no/such/place.log", logging.Formatter()) is None  # a warning, not a failure
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()


def test_validate_with_templates_says_which_jobs_it_cannot_render_instead_of_failing(capsys, tmp_path):
    """A job taking inputs from a job not in the file is made only on the cluster: validate --template says so for it
    (exit 0, no traceback) and checks the others."""
    path = tmp_path / "jobs.yaml"
    path.write_text("""apiVersion: bertoperator.io/v1alpha1
kind: BertTrainingJob
metadata: {name: lone}
spec:
  task: {glue: {}}
  dataset: {uri: s3://data/glue}
  model: {vocabFrom: {fromJob: other}, initCheckpointFrom: {fromJob: other}}
  output: {uri: s3://out/lone}
""")
    done = bertjob(capsys, "validate", str(path), "--template", str(TEMPLATES / "istio-off.yaml"))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "default/lone: templates not checked: it takes inputs from a job not in this file" in done.stdout
    done = bertjob(capsys, "run", "--local", str(path), "--template", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "missing.yaml: no such file" in done.stderr


# What an overlay changes is held to the MPIJob CRD the cluster serves and to core/v1 (templates/schema.py), by a
# walk that validates only the changed parts: the verdict must be full validation's.

SCHEMA_BREAKERS = {
    "typo": "            containers:\n              - name: worker\n                resource: {limits: {x: 1}}\n",
    "types": "            hostNetwork: 'yes'\n            containers:\n              - name: side\n                image: x/y\n"
             "                ports: [{containerPort: web}]\n",
    "missing-name": "            containers:\n              - name: worker\n                env: [{value: '1'}]\n",
    "new-volume-field": "            volumes:\n              - name: v\n                emptyDir: {sizeLimit: 1Gi}\n"
                        "                bogus: 1\n",
    "fine": "            volumes:\n              - name: v\n                emptyDir: {sizeLimit: 1Gi}\n",
}


@functools.lru_cache(maxsize=1)
def crd_check():
    import yaml

    from bert_operator.templates.schema import mpijob_check
    from tests.conftest import shared_file

    return mpijob_check(yaml.load(shared_file("crds/kubeflow.org_mpijobs.yaml").read_text(),
                                  Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def merged_examples():
    """(base MPIJob, the MPIJob with one overlay) for every example and every schema breaker."""
    from bert_operator.render import render_mpijob
    from bert_operator.tasks import stages_of
    from bert_operator.templates import overlay_context
    from bert_operator.templates.overlay import render_patch
    from bert_operator.render.values import RenderSettings, template_values

    job = jobs()[1]
    stage = stages_of(job.spec)[0]
    context = overlay_context(job, stage, template_values(job, stage, RenderSettings()))
    base = render_mpijob(job, stage)
    given = [example(name) for name in EXAMPLES] + [overlay(PATCH_HEAD + body) for body in SCHEMA_BREAKERS.values()]
    return [(base, strategic_merge(base, render_patch(o, context, None).patch)) for o in given]


def test_the_walk_over_changed_parts_finds_what_full_validation_finds():
    """For every example and breaker: the errors the walk reports are full jsonschema validation's (the walk adds
    the fields a structural schema would prune, which full validation does not see), at the same paths."""
    import jsonschema

    from bert_operator.templates.schema import pod_template_check

    pods, crd = pod_template_check(), crd_check()
    full_crd = jsonschema.Draft4Validator(crd.schema)
    full_pod = jsonschema.Draft202012Validator(pods.schema)
    found_any = 0
    for base, result in merged_examples():
        walked = {(tuple(path), message) for path, message in crd.changes(base, result)
                  if "would drop it" not in message}
        assert walked == {(tuple(e.absolute_path), e.message) for e in full_crd.iter_errors(result)}
        for replica in ("Launcher", "Worker"):
            at = ["spec", "mpiReplicaSpecs", replica, "template"]
            before, after = base["spec"]["mpiReplicaSpecs"][replica]["template"], result["spec"]["mpiReplicaSpecs"][replica]["template"]
            walked_pod = {tuple(path[len(at):]) for path, _ in pods.changes(before, after, at)}
            full = set()
            for error in full_pod.iter_errors(after):
                extra = [k for k in error.instance if k not in (error.schema.get("properties") or {})] \
                    if error.validator == "additionalProperties" else [None]
                full |= {tuple(error.absolute_path) + ((k,) if k is not None else ()) for k in extra}
            assert walked_pod == full, replica
            found_any += len(full)
    assert found_any >= 5  # the breakers broke something


@pytest.mark.parametrize("name,field,message", [
    ("typo", "containers[0].resource", "'resource' is not a field of core/v1 PodTemplateSpec here (did you mean 'resources'?)"),
    ("types", "ports[0].containerPort", "'web' is not of type 'integer'"),
    ("missing-name", "containers[0].env[", "'name' is a required property"),
    ("new-volume-field", "volumes[2].bogus", "'bogus' is not a field of core/v1"),
])
def test_an_overlay_core_v1_refuses_fails_naming_the_field_without_a_cluster(name, field, message):
    with pytest.raises(TemplateInvalid) as failed:
        render_with_overlays(jobs()[1], [overlay(PATCH_HEAD + SCHEMA_BREAKERS[name])])
    assert field in failed.value.field and message in str(failed.value), str(failed.value)
    assert failed.value.line is not None
    assert render_with_overlays(jobs()[1], [overlay(PATCH_HEAD + SCHEMA_BREAKERS["fine"])])


def test_a_field_the_mpijob_crd_would_prune_fails_only_with_the_crd():
    """A field outside the pods is core/v1's business nowhere: only the cluster's MPIJob CRD can say it is dropped."""
    typo = overlay("name: run\nversion: '1'\npatch: |\n  spec:\n    runPolicy:\n      ttlSecondsAfterFinish: 3600\n")
    assert render_with_overlays(jobs()[1], [typo])  # no CRD given: nothing knows runPolicy's fields
    with pytest.raises(TemplateInvalid) as failed:
        render_with_overlays(jobs()[1], [typo], mpijob_schema=crd_check())
    assert failed.value.field == "spec.runPolicy.ttlSecondsAfterFinish" and failed.value.line == 6
    assert "the API server would drop it (did you mean 'ttlSecondsAfterFinished'?)" in str(failed.value)
    good = overlay("name: run\nversion: '1'\npatch: |\n  spec:\n    runPolicy:\n      ttlSecondsAfterFinished: 3600\n")
    assert render_with_overlays(jobs()[1], [good], mpijob_schema=crd_check())


def test_the_catalog_follows_the_mpijob_crd_and_keeps_a_schema_through_a_failed_read():
    from bert_operator.templates.catalog import MPIJOB_SCHEMA, Catalog, Unavailable
    from bert_operator.templates.schema import SchemaCheck

    catalog = Catalog()
    assert MPIJOB_SCHEMA not in catalog.snapshot()  # never read: no cluster, no check (local mode)
    assert catalog.mpijob_crd(None) and "is not installed" in catalog.snapshot()[MPIJOB_SCHEMA].reason
    crd = {**crd_check_source(), "metadata": {"name": "mpijobs.kubeflow.org", "resourceVersion": "7"}}
    assert catalog.mpijob_crd(crd) and isinstance(catalog.snapshot()[MPIJOB_SCHEMA], SchemaCheck)
    assert not catalog.mpijob_crd(crd)  # the same version: nothing rebuilt, no job woken
    assert not catalog.mpijob_crd(None, error="503")  # a failed read keeps what was read
    assert isinstance(catalog.snapshot()[MPIJOB_SCHEMA], SchemaCheck)
    old = {**crd, "metadata": {**crd["metadata"], "resourceVersion": "8"},
           "spec": {**crd["spec"], "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {}}}]}}
    assert catalog.mpijob_crd(old)
    got = catalog.snapshot()[MPIJOB_SCHEMA]
    assert isinstance(got, Unavailable) and "serves no v2beta1" in got.reason


def crd_check_source():
    import yaml

    from tests.conftest import shared_file

    return yaml.load(shared_file("crds/kubeflow.org_mpijobs.yaml").read_text(),
                     Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_the_cli_checks_against_a_given_mpijob_crd(capsys, tmp_path):
    from tests.conftest import shared_file

    run_cli = functools.partial(bertjob, capsys)
    tiny = str(REPO / "examples" / "bertjob-tiny.yaml")
    path = tmp_path / "run.yaml"
    path.write_text("name: run\nversion: '1'\npatch: |\n  spec:\n    runPolicy:\n      backofLimit: 3\n")
    assert run_cli("validate", tiny, "--template", str(path)).returncode == 0
    done = run_cli("validate", tiny, "--template", str(path), "--mpijob-crd", str(shared_file("crds/kubeflow.org_mpijobs.yaml")))
    assert done.returncode == 2 and "spec.runPolicy.backofLimit" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("validate", tiny, "--template", str(path), "--mpijob-crd", str(path))
    assert done.returncode == 2 and "no CustomResourceDefinition named mpijobs.kubeflow.org" in done.stderr
    done = run_cli("validate", tiny, *["--template", str(path)] * 17)  # (checked before any is read)
    assert done.returncode == 2 and "--template: at most 16 templates" in done.stderr


def test_a_patch_that_renders_without_end_is_stopped_at_its_bound():
    """The sandbox bounds each range() to 100,000 items; nested, a loop would still render gigabytes: the rendering
    stops at MAX_RENDERED_CHARS instead."""
    from bert_operator.templates.overlay import MAX_RENDERED_CHARS

    endless = overlay("name: loop\nversion: '1'\npatch: |\n  metadata:\n    annotations:\n"
                      "  {% for i in range(100000) %}{% for j in range(100000) %}    a{{ i }}-{{ j }}: x\n"
                      "  {% endfor %}{% endfor %}\n")
    with pytest.raises(TemplateInvalid, match=f"renders to over {MAX_RENDERED_CHARS} characters"):
        render_with_overlays(jobs()[1], [endless])
