"""What the rendered pods expect of the trainer image; Dockerfile.trainer builds exactly this.

The pods run as an unprivileged user so that they pass the PodSecurity
`restricted` profile: no root, no privilege escalation, no capabilities, the
runtime's seccomp profile. MPI still needs ssh from the launcher to the workers,
so the image gives that user its own sshd: a config, host keys and a pid file
in the user's home, listening on an unprivileged port. The MPI Operator mounts
the job's generated keys at `sshAuthMountPath`, the user's ~/.ssh; the host keys
live beside it (~/.sshd), because that mount hides whatever the image put in ~/.ssh.
A custom `spec.image` must provide the same user, paths and port
(tests/chart/test_dockerfiles.py holds Dockerfile.trainer to these constants).
"""

from __future__ import annotations

from typing import Any, Final

#: The image's non-root user and group (Dockerfile.trainer: useradd --uid 1000).
TRAINER_UID: Final = 1000
TRAINER_GID: Final = 1000
TRAINER_HOME: Final = "/home/bert"
#: Where the MPI Operator mounts the job's SSH keys (its default, /root/.ssh, is root's).
SSH_AUTH_MOUNT_PATH: Final = f"{TRAINER_HOME}/.ssh"
#: The user's sshd: its own config (Port, HostKey, PidFile, StrictModes), read with -f.
SSHD_CONFIG: Final = f"{TRAINER_HOME}/.sshd/sshd_config"
#: Above 1023, so sshd binds it without NET_BIND_SERVICE; the launcher's ssh is told it by mpirun (command.py).
SSH_PORT: Final = 2222
#: The workers' command: sshd in the foreground, logging to stderr, as the image's user.
WORKER_COMMAND: Final = ["/usr/sbin/sshd", "-De", "-f", SSHD_CONFIG]


def pod_security_context() -> dict[str, Any]:
    """Every pod: the image's user, never root, the runtime's default seccomp profile.

    fsGroup makes the MPI Operator's Secret-mounted keys and a PVC's files readable by that user;
    OnRootMismatch keeps a large dataset claim from being re-chowned file by file at every start.
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINER_UID,
        "runAsGroup": TRAINER_GID,
        "fsGroup": TRAINER_GID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Every container (launcher, worker, dataset sync): no privilege escalation, no capabilities."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
