"""Every rendered pod passes PodSecurity `restricted`; the checker itself catches each rule of the table."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import EXAMPLES
from bert_operator import pod_security as pss
from tests.operator.test_render import rendered


def templates(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{mpijob['metadata']['name']}/{replica}", spec["template"])
            for mpijob in rendered(path) for replica, spec in mpijob["spec"]["mpiReplicaSpecs"].items()]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_rendered_pod_passes_restricted(path: Path) -> None:
    found = templates(path)
    assert {name.rsplit("/", 1)[1] for name, _ in found} == {"Launcher", "Worker"}
    for name, template in found:
        assert pss.restricted(template["spec"], template["metadata"].get("annotations")) == [], name


def test_the_progress_token_and_sync_container_pass_too() -> None:
    """The variants the examples may not show: a projected token volume and the dataset sync init container."""
    example = next(p for p in EXAMPLES if p.name == "bert-large-pretrain.yaml")
    [phase1, _] = rendered(example, progress_url="https://bert-operator.bert-operator.svc:8081")
    worker = phase1["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["initContainers"] and any("projected" in v for v in worker["volumes"])
    assert pss.restricted(worker) == []


def good_pod() -> dict[str, Any]:
    """A rendered worker pod with a sync init container: the baseline for the hand-made bad pods."""
    example = next(p for p in EXAMPLES if p.name == "bert-large-pretrain.yaml")
    return copy.deepcopy(rendered(example)[0]["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"])


def worker_context(pod: dict) -> dict:
    return pod["containers"][0]["securityContext"]


def init_context(pod: dict) -> dict:
    return pod["initContainers"][0]["securityContext"]


#: (id, change to a good pod, annotations, the rule the violation names, whether baseline refuses it too)
CASES: list[tuple[str, Callable[[dict], Any], dict[str, str], str, bool]] = [
    ("host network", lambda p: p.update(hostNetwork=True), {}, "host namespaces: hostNetwork", True),
    ("host PID", lambda p: p.update(hostPID=True), {}, "host namespaces: hostPID", True),
    ("host IPC", lambda p: p.update(hostIPC=True), {}, "host namespaces: hostIPC", True),
    ("host process", lambda p: worker_context(p).update(windowsOptions={"hostProcess": True}), {}, "HostProcess", True),
    ("privileged init container", lambda p: init_context(p).update(privileged=True), {}, "privileged: initContainers[0]", True),
    ("a capability beyond baseline", lambda p: worker_context(p)["capabilities"].update(add=["SYS_ADMIN"]), {},
     "capabilities: containers[0].securityContext.capabilities.add has ['SYS_ADMIN']", True),
    ("hostPath volume", lambda p: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), {}, "hostPath volumes", True),
    ("host port", lambda p: p["containers"][0].update(ports=[{"containerPort": 2222, "hostPort": 2222}]), {}, "host ports", True),
    ("AppArmor unconfined", lambda p: worker_context(p).update(appArmorProfile={"type": "Unconfined"}), {}, "AppArmor", True),
    ("AppArmor annotation", lambda p: None, {"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"},
     "AppArmor: annotation", True),
    ("seccomp pod annotation", lambda p: None, {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"},
     "seccomp: annotation", True),
    ("seccomp container annotation", lambda p: None, {"container.seccomp.security.alpha.kubernetes.io/worker": "x"},
     "seccomp: annotation", True),
    ("SELinux type", lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}), {}, "SELinux: securityContext", True),
    ("SELinux user", lambda p: worker_context(p).update(seLinuxOptions={"user": "system_u"}), {}, "SELinux: containers[0]", True),
    ("unmasked /proc", lambda p: worker_context(p).update(procMount="Unmasked"), {}, "/proc mount type", True),
    ("seccomp unconfined", lambda p: init_context(p).update(seccompProfile={"type": "Unconfined"}), {}, "seccomp: initContainers[0]", True),
    ("unsafe sysctl", lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), {}, "sysctls", True),
    ("nfs volume", lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}), {}, "volume types", False),
    ("privilege escalation allowed", lambda p: init_context(p).pop("allowPrivilegeEscalation"), {},
     "privilege escalation: initContainers[0]", False),
    ("root allowed", lambda p: p["securityContext"].pop("runAsNonRoot"), {}, "running as non-root: initContainers[0]", False),
    ("a container runs as root", lambda p: worker_context(p).update(runAsNonRoot=False), {}, "running as non-root: containers[0]", False),
    ("uid 0", lambda p: p["securityContext"].update(runAsUser=0), {}, "running as non-root user", False),
    ("no seccomp profile", lambda p: p["securityContext"].pop("seccompProfile"), {}, "seccomp: containers[0] needs", False),
    ("capabilities kept", lambda p: worker_context(p).pop("capabilities"), {}, "capabilities.drop must include ALL", False),
    ("a baseline capability added", lambda p: init_context(p)["capabilities"].update(add=["CHOWN"]), {},
     "may hold only NET_BIND_SERVICE", False),
]


@pytest.mark.parametrize(("change", "annotations", "rule", "in_baseline"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_checker_catches_each_rule(change: Callable[[dict], Any], annotations: dict[str, str], rule: str,
                                       in_baseline: bool) -> None:
    pod = good_pod()
    assert pss.restricted(pod) == []
    change(pod)
    found = pss.restricted(pod, annotations)
    assert any(rule in line for line in found), found
    assert any(rule in line for line in pss.baseline(pod, annotations)) is in_baseline


def test_allowed_values_are_not_violations() -> None:
    """The table's allowed values pass: the checker refuses only what the standard does."""
    pod = good_pod()
    worker_context(pod)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    worker_context(pod).update(appArmorProfile={"type": "RuntimeDefault"}, seLinuxOptions={"type": "container_t"})
    pod["securityContext"]["sysctls"] = [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]
    pod["securityContext"].pop("seccompProfile")
    for _, container in pss.containers(pod):
        container["securityContext"]["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    assert pss.restricted(pod, {"container.apparmor.security.beta.kubernetes.io/worker": "localhost/p",
                                "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
                                "container.seccomp.security.alpha.kubernetes.io/worker": "localhost/p.json"}) == []


def test_podtemplate_annotations_cannot_break_restricted() -> None:
    """The rendered pods carry podTemplate's annotations: one that PodSecurity would refuse is refused in the spec,
    naming the field, and what is accepted still passes."""
    from bert_operator.api import SpecError
    from bert_operator.api.parse import parse_job
    from bert_operator.render import render_all
    import yaml

    example = next(p for p in EXAMPLES if p.name == "bert-large-pretrain.yaml")
    document = yaml.safe_load(example.read_text())
    document["spec"]["resources"]["podTemplate"] = {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}}
    with pytest.raises(SpecError, match=r"spec\.resources\.podTemplate\.annotations\['container\.apparmor"):
        parse_job(document)
    document["spec"]["resources"]["podTemplate"] = {"annotations": {
        "seccomp.security.alpha.kubernetes.io/pod": "runtime/default", "team.example.com/cost": "a",
        "container.seccomp.security.alpha.kubernetes.io/worker": "docker/default"}}  # the default profile's old name
    for mpijob in render_all(parse_job(document)):
        for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
            template = replica["template"]
            assert template["metadata"]["annotations"]["team.example.com/cost"] == "a"
            assert pss.restricted(template["spec"], template["metadata"]["annotations"]) == []
