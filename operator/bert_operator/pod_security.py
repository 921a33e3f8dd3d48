"""Pod Security Standards (baseline and restricted) as a checker of pod specs, from the published table.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ lists each
control, the fields it restricts and the values it allows; each check below is
one row of that table and says what it found in the words of a field path.
`restricted(pod_spec)` is what PodSecurity admission at `enforce: restricted`
would refuse the pod for (empty: admitted), `baseline(pod_spec)` the same at
`baseline`. Written from the table, not from the admission plugin's code, so a
test can hold both the renderer and this checker to it, and the job templates
(bert_operator.templates) check what a platform's overlay makes of the pods with
it before anything is created. Each finding is a line of text that also carries
the field path it is about (``Violation.path``), so an error can point into the
overlay that set it.
"""

from __future__ import annotations

from typing import Any, Iterator

#: Capabilities baseline lets a container add (everything else is refused).
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
#: The only capability restricted lets a container add.
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
#: The seccomp annotations the standards read for the versions before 1.19 (a namespace may pin enforce-version).
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
SECCOMP_ANNOTATION_VALUES = frozenset({"runtime/default", "docker/default"})
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


#: The Pod Security Standards' levels; privileged restricts nothing.
LEVELS = ("restricted", "baseline", "privileged")


class Violation(str):
    """One refusal, as the sentence shown to users, with the pod-spec path of the field it is about (``metadata.annotations``
    for an annotation)."""

    path: str

    def __new__(cls, text: str, path: str) -> "Violation":
        found = super().__new__(cls, text)
        found.path = path
        return found


def check(level: str, pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[Violation]:
    """What PodSecurity admission at `level` refuses in a pod spec (nothing at privileged)."""
    if level not in LEVELS:
        raise ValueError(f"pod security level {level!r}: expected one of {', '.join(LEVELS)}")
    if level == "privileged":
        return []
    return restricted(pod, annotations) if level == "restricted" else baseline(pod, annotations)


def containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, container) for every container of every kind."""
    for kind in CONTAINER_LISTS:
        for index, container in enumerate(pod.get(kind) or []):
            yield f"{kind}[{index}]", container


def _contexts(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod's securityContext and each container's, with their paths."""
    yield "securityContext", pod.get("securityContext") or {}
    for path, container in containers(pod):
        yield f"{path}.securityContext", container.get("securityContext") or {}


def baseline(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[Violation]:
    """What the baseline profile refuses in a pod spec (and its annotations)."""
    found: list[Violation] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(Violation(f"host namespaces: {field} must be unset or false", field))
    for path, context in _contexts(pod):
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(Violation(f"HostProcess: {path}.windowsOptions.hostProcess must be unset or false",
                                     f"{path}.windowsOptions.hostProcess"))
        if context.get("privileged"):
            found.append(Violation(f"privileged: {path}.privileged must be unset or false", f"{path}.privileged"))
        added = set((context.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(Violation(f"capabilities: {path}.capabilities.add has {sorted(added)} beyond baseline's",
                                     f"{path}.capabilities.add"))
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            found.append(Violation(f"AppArmor: {path}.appArmorProfile.type {apparmor!r} is not RuntimeDefault or Localhost",
                                     f"{path}.appArmorProfile.type"))
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(Violation(f"SELinux: {path}.seLinuxOptions.type {selinux['type']!r} is not allowed",
                                     f"{path}.seLinuxOptions.type"))
        for field in ("user", "role"):
            if selinux.get(field):
                found.append(Violation(f"SELinux: {path}.seLinuxOptions.{field} must be unset", f"{path}.seLinuxOptions.{field}"))
        if context.get("procMount", "Default") != "Default":
            found.append(Violation(f"/proc mount type: {path}.procMount must be unset or Default", f"{path}.procMount"))
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(Violation(f"seccomp: {path}.seccompProfile.type must not be Unconfined", f"{path}.seccompProfile.type"))
    for index, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in volume:
            found.append(Violation(f"hostPath volumes: volumes[{index}] ({volume.get('name')}) is a hostPath",
                                   f"volumes[{index}]"))
    for path, container in containers(pod):
        for index, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                found.append(Violation(f"host ports: {path}.ports[{index}].hostPort must be unset or 0",
                                       f"{path}.ports[{index}].hostPort"))
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            found.append(Violation(f"AppArmor: annotation {key} {value!r} is not runtime/default or localhost/*",
                                     "metadata.annotations"))
        seccomp = key == SECCOMP_POD_ANNOTATION or key.startswith(SECCOMP_CONTAINER_ANNOTATION)
        if seccomp and value not in SECCOMP_ANNOTATION_VALUES and not value.startswith("localhost/"):
            found.append(Violation(f"seccomp: annotation {key} {value!r} is not runtime/default, docker/default or localhost/*",
                                     "metadata.annotations"))
    for sysctl in (pod.get("securityContext") or {}).get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(Violation(f"sysctls: securityContext.sysctls {sysctl.get('name')!r} is not a safe sysctl",
                                     "securityContext.sysctls"))
    return found


def restricted(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[Violation]:
    """What the restricted profile refuses: all of baseline's, and its own rows."""
    found = baseline(pod, annotations)
    pod_context = pod.get("securityContext") or {}
    for index, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(Violation(f"volume types: volumes[{index}] ({volume.get('name')}) is {sorted(kinds)}, "
                                   "not an allowed type", f"volumes[{index}]"))
    pod_non_root = pod_context.get("runAsNonRoot") is True
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    if pod_context.get("runAsUser") == 0:
        found.append(Violation("running as non-root user: securityContext.runAsUser must not be 0", "securityContext.runAsUser"))
    for path, container in containers(pod):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(Violation(f"privilege escalation: {path}.securityContext.allowPrivilegeEscalation must be false",
                                     f"{path}.securityContext.allowPrivilegeEscalation"))
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            found.append(Violation(f"running as non-root: {path} must run with runAsNonRoot true (its own or the pod's)",
                                     f"{path}.securityContext.runAsNonRoot"))
        if context.get("runAsUser") == 0:
            found.append(Violation(f"running as non-root user: {path}.securityContext.runAsUser must not be 0",
                                     f"{path}.securityContext.runAsUser"))
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost") and not (seccomp is None and pod_seccomp):
            found.append(Violation(f"seccomp: {path} needs seccompProfile RuntimeDefault or Localhost (its own or the pod's)",
                                     f"{path}.securityContext.seccompProfile"))
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(Violation(f"capabilities: {path}.securityContext.capabilities.drop must include ALL",
                                     f"{path}.securityContext.capabilities.drop"))
        added = set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES
        if added:
            found.append(Violation(f"capabilities: {path}.securityContext.capabilities.add may hold only NET_BIND_SERVICE, "
                                     f"has {sorted(added)}", f"{path}.securityContext.capabilities.add"))
    return found
