"""Pod Security Standards (baseline and restricted) as a checker of pod specs, from the published table.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ lists each
control, the fields it restricts and the values it allows; each check below is
one row of that table and says what it found in the words of a field path.
`violations(pod_spec)` is what PodSecurity admission at `enforce: restricted`
would refuse the pod for (empty: admitted). Written from the table, not from
the admission plugin's code, so a test can hold both the renderer and this
checker to it.
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


def baseline(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """What the baseline profile refuses in a pod spec (and its annotations)."""
    found: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"host namespaces: {field} must be unset or false")
    for path, context in _contexts(pod):
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"HostProcess: {path}.windowsOptions.hostProcess must be unset or false")
        if context.get("privileged"):
            found.append(f"privileged: {path}.privileged must be unset or false")
        added = set((context.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(f"capabilities: {path}.capabilities.add has {sorted(added)} beyond baseline's")
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"AppArmor: {path}.appArmorProfile.type {apparmor!r} is not RuntimeDefault or Localhost")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(f"SELinux: {path}.seLinuxOptions.type {selinux['type']!r} is not allowed")
        for field in ("user", "role"):
            if selinux.get(field):
                found.append(f"SELinux: {path}.seLinuxOptions.{field} must be unset")
        if context.get("procMount", "Default") != "Default":
            found.append(f"/proc mount type: {path}.procMount must be unset or Default")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"seccomp: {path}.seccompProfile.type must not be Unconfined")
    for index, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in volume:
            found.append(f"hostPath volumes: volumes[{index}] ({volume.get('name')}) is a hostPath")
    for path, container in containers(pod):
        for index, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                found.append(f"host ports: {path}.ports[{index}].hostPort must be unset or 0")
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            found.append(f"AppArmor: annotation {key} {value!r} is not runtime/default or localhost/*")
        seccomp = key == SECCOMP_POD_ANNOTATION or key.startswith(SECCOMP_CONTAINER_ANNOTATION)
        if seccomp and value not in SECCOMP_ANNOTATION_VALUES and not value.startswith("localhost/"):
            found.append(f"seccomp: annotation {key} {value!r} is not runtime/default, docker/default or localhost/*")
    for sysctl in (pod.get("securityContext") or {}).get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctls: securityContext.sysctls {sysctl.get('name')!r} is not a safe sysctl")
    return found


def restricted(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """What the restricted profile refuses: all of baseline's, and its own rows."""
    found = baseline(pod, annotations)
    pod_context = pod.get("securityContext") or {}
    for index, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume types: volumes[{index}] ({volume.get('name')}) is {sorted(kinds)}, not an allowed type")
    pod_non_root = pod_context.get("runAsNonRoot") is True
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    if pod_context.get("runAsUser") == 0:
        found.append("running as non-root user: securityContext.runAsUser must not be 0")
    for path, container in containers(pod):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"privilege escalation: {path}.securityContext.allowPrivilegeEscalation must be false")
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            found.append(f"running as non-root: {path} must run with runAsNonRoot true (its own or the pod's)")
        if context.get("runAsUser") == 0:
            found.append(f"running as non-root user: {path}.securityContext.runAsUser must not be 0")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost") and not (seccomp is None and pod_seccomp):
            found.append(f"seccomp: {path} needs seccompProfile RuntimeDefault or Localhost (its own or the pod's)")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"capabilities: {path}.securityContext.capabilities.drop must include ALL")
        added = set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES
        if added:
            found.append(f"capabilities: {path}.securityContext.capabilities.add may hold only NET_BIND_SERVICE, has {sorted(added)}")
    return found
