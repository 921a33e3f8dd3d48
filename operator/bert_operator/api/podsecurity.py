"""Pod annotations that would break the pods' PodSecurity `restricted` promise, refused in podTemplate.

The operator renders every pod to pass PodSecurity `restricted` (render/image.py), so a
platform can enforce that profile on tenant namespaces. A podTemplate annotation can
undo that: the Pod Security Standards also read the legacy AppArmor and seccomp
annotations (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
AppArmor in baseline; seccomp's annotations for the versions before 1.19 that a
namespace may pin with `enforce-version`). A pod with such an annotation would be
refused by PodSecurity admission (the job then waits for pods that never come) or, where
the profile is not enforced, run unconfined. Refusing it in the spec names the field
instead. Labels carry no security setting, so only annotations are checked here.

What is allowed is the standards' allowed values, narrowed to what the API server then
also accepts on the rendered pods:

* ``container.apparmor.security.beta.kubernetes.io/<container>``: never, though the
  standards allow ``runtime/default`` and ``localhost/<profile>``: podTemplate goes onto
  the launcher and the worker pods alike, which share no container name, and the API
  server refuses a pod whose annotation names a container it does not have;
* ``seccomp.security.alpha.kubernetes.io/pod``: ``runtime/default`` (or its older name
  ``docker/default``) only (the pods' seccompProfile is RuntimeDefault, and the API server
  refuses an annotation that disagrees with the field);
* ``container.seccomp.security.alpha.kubernetes.io/<container>``: ``runtime/default``,
  ``docker/default`` or ``localhost/<relative path>``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Final

APPARMOR_PREFIX: Final = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_POD_KEY: Final = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_PREFIX: Final = "container.seccomp.security.alpha.kubernetes.io/"
RUNTIME_DEFAULT: Final = "runtime/default"
#: The runtime's default profile under its older name: the Pod Security Standards allow it, and the API server reads
#: it as RuntimeDefault (so it agrees with the pods' seccompProfile).
RUNTIME_DEFAULTS: Final = frozenset({RUNTIME_DEFAULT, "docker/default"})
LOCALHOST: Final = "localhost/"


def _localhost_profile(value: str) -> bool:
    """``localhost/<profile>`` with a relative profile path that does not climb out (as the API server checks)."""
    if not value.startswith(LOCALHOST):
        return False
    profile = PurePosixPath(value[len(LOCALHOST):])
    return bool(value[len(LOCALHOST):]) and not profile.is_absolute() and ".." not in profile.parts


def annotation_problem(key: str, value: str) -> str | None:
    """Why a pod annotation would fail PodSecurity `restricted` (or the pod's creation) on the rendered pods;
    None when it may be set."""
    if key.startswith(APPARMOR_PREFIX):
        if value != RUNTIME_DEFAULT and not value.startswith(LOCALHOST):
            return ("would fail PodSecurity restricted (AppArmor: allowed are runtime/default and localhost/<profile>); "
                    "podTemplate sets no AppArmor annotation: the pods already run the runtime's default profile")
        return ("names one container, but podTemplate annotations go onto the launcher and the worker pods, which "
                "share no container name, and the API server refuses a pod whose AppArmor annotation names a "
                "container it does not have (the pods already run the runtime's default profile)")
    if key == SECCOMP_POD_KEY and value not in RUNTIME_DEFAULTS:
        verdict = "is refused by the API server" if _localhost_profile(value) else "would fail PodSecurity restricted"
        return (f"{verdict} (seccomp: allowed is runtime/default, the pods' own seccompProfile RuntimeDefault; the API "
                "server refuses a pod annotation that disagrees with it)")
    if key.startswith(SECCOMP_CONTAINER_PREFIX) and value not in RUNTIME_DEFAULTS and not _localhost_profile(value):
        return ("would fail PodSecurity restricted (seccomp: allowed are runtime/default and "
                "localhost/<relative profile path>)")
    return None
