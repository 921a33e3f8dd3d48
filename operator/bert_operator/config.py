"""Operator settings, read once from flags and the environment."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .pod_security import LEVELS
from .render.values import DEFAULT_NCCL_DEBUG, DEFAULT_TRAINER_IMAGE, NCCL_DEBUG_LEVELS


class SettingsError(ValueError):
    """A setting the operator cannot start with; the message names the flag or variable."""


def _env_number(env: Mapping[str, str], name: str, kind: type[int] | type[float], default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


def _check_free(flag: str, port: int) -> None:
    """Refuse a port another process holds now, rather than fail with a traceback once serving starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            raise SettingsError(f"{flag}: port {port} cannot be served ({exc.strerror}); choose a free port") from None


@dataclass(frozen=True)
class OperatorSettings:
    """Everything `bertjob operator` can be told; flags override BERTOP_* environment variables."""

    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    kubeconfig: str | None = None
    liveness_port: int = 8080
    metrics_port: int = 9090
    progress_port: int = 8081
    #: URL pods use to reach the progress endpoint (the operator's Service).
    progress_url: str | None = None
    resync_seconds: float = 60.0
    #: validating webhook (HTTPS) port; 0: no webhook (the operator still validates every job)
    webhook_port: int = 0
    #: folder holding tls.crt and tls.key for the webhook (a mounted kubernetes.io/tls Secret)
    webhook_cert_dir: str = "/etc/bert-operator/webhook"
    progress_stale_seconds: float = 600.0
    #: Handler threads for the watch events' reconciles (kopf's executor). Four, as client-go controllers run a
    #: few workers, not sixteen: every thread's work passes kopf's one event loop and one GIL, and in a burst of
    #: job starts sixteen threads each holding a connection gave fewer starts per second than four, at more CPU per
    #: start for the operator and for the API server (docs/benchmarks.md, "Operator throughput").
    workers: int = 4
    #: folder with tls.crt/tls.key (and ca.crt) to serve the progress endpoint over HTTPS; None: plain HTTP
    progress_cert_dir: str | None = None
    #: NCCL_DEBUG on every trainer rank (NCCL's levels); INFO prints topology and transports per rank.
    nccl_debug: str = DEFAULT_NCCL_DEBUG
    #: Seconds before the first re-creation of a stage that failed for an infrastructure reason (doubling per
    #: restart, at most restart_backoff_max_seconds).
    restart_backoff_seconds: float = 30.0
    restart_backoff_max_seconds: float = 360.0
    #: The namespace whose labelled ConfigMaps are the platform's job templates (the chart's release namespace);
    #: None: no templates, and a job that gets one waits (TemplateUnavailable). Only this namespace: a tenant's own
    #: ConfigMap must never pass for the platform's.
    templates_namespace: str | None = None
    #: The PodSecurity level (restricted, baseline, privileged) every MPIJob made with job templates must pass.
    pod_security: str = "restricted"

    def progress_ca(self) -> str | None:
        """The PEM trainer pods verify the progress endpoint with: the Secret's ca.crt, else tls.crt itself."""
        if not self.progress_cert_dir:
            return None
        folder = Path(self.progress_cert_dir)
        return next((folder / name).read_text() for name in ("ca.crt", "tls.crt") if (folder / name).is_file())

    def progress_ssl(self) -> ssl.SSLContext | None:
        """The server side of the progress endpoint's TLS, or None for plain HTTP."""
        if not self.progress_cert_dir:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(Path(self.progress_cert_dir) / "tls.crt", Path(self.progress_cert_dir) / "tls.key")
        return context

    @classmethod
    def from_env(cls, **overrides: object) -> "OperatorSettings":
        env = os.environ
        values: dict[str, object] = {
            "namespaces": tuple(n for n in env.get("BERTOP_NAMESPACES", "").split(",") if n),
            "trainer_image": env.get("BERTOP_TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE),
            "progress_url": env.get("BERTOP_PROGRESS_URL") or None,
            "resync_seconds": _env_number(env, "BERTOP_RESYNC_SECONDS", float, 60.0),
            "webhook_port": _env_number(env, "BERTOP_WEBHOOK_PORT", int, 0),
            "webhook_cert_dir": env.get("BERTOP_WEBHOOK_CERT_DIR", "/etc/bert-operator/webhook"),
            "progress_stale_seconds": _env_number(env, "BERTOP_PROGRESS_STALE_SECONDS", float, 600.0),
            "nccl_debug": env.get("BERTOP_NCCL_DEBUG") or DEFAULT_NCCL_DEBUG,
            "progress_cert_dir": env.get("BERTOP_PROGRESS_CERT_DIR") or None,
            "restart_backoff_seconds": _env_number(env, "BERTOP_RESTART_BACKOFF_SECONDS", float, 30.0),
            "restart_backoff_max_seconds": _env_number(env, "BERTOP_RESTART_BACKOFF_MAX_SECONDS", float, 360.0),
            "templates_namespace": env.get("BERTOP_TEMPLATES_NAMESPACE") or None,
            "pod_security": env.get("BERTOP_POD_SECURITY") or "restricted",
        }
        values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse, before connecting anywhere, settings the operator could only fail on later."""
        ports = (("--liveness-port", self.liveness_port, 0), ("--metrics-port", self.metrics_port, 0),
                 ("--progress-port", self.progress_port, 1), ("--webhook-port (BERTOP_WEBHOOK_PORT)", self.webhook_port, 0))
        for flag, port, lowest in ports:
            if not lowest <= port <= 65535:
                raise SettingsError(f"{flag}: must be a port from {lowest} to 65535, got {port}")
        for flag, port, _ in ports:
            if port:
                _check_free(flag, port)
        for flag, seconds in (("--resync-seconds (BERTOP_RESYNC_SECONDS)", self.resync_seconds),
                              ("BERTOP_PROGRESS_STALE_SECONDS", self.progress_stale_seconds),
                              ("--restart-backoff-seconds (BERTOP_RESTART_BACKOFF_SECONDS)", self.restart_backoff_seconds),
                              ("BERTOP_RESTART_BACKOFF_MAX_SECONDS", self.restart_backoff_max_seconds)):
            if seconds <= 0:
                raise SettingsError(f"{flag}: must be positive, got {seconds}")
        if self.pod_security not in LEVELS:
            raise SettingsError(f"BERTOP_POD_SECURITY: must be one of {', '.join(LEVELS)}, got {self.pod_security!r}")
        if self.nccl_debug not in NCCL_DEBUG_LEVELS:
            raise SettingsError(f"BERTOP_NCCL_DEBUG: must be one of {', '.join(NCCL_DEBUG_LEVELS)}, got {self.nccl_debug!r}")
        if self.progress_cert_dir:
            for name in ("tls.crt", "tls.key"):
                if not (Path(self.progress_cert_dir) / name).is_file():
                    raise SettingsError(f"--progress-cert-dir (BERTOP_PROGRESS_CERT_DIR): {Path(self.progress_cert_dir) / name}: "
                                        "no such file; HTTPS needs tls.crt and tls.key (a mounted kubernetes.io/tls Secret)")
            if self.progress_url and not self.progress_url.startswith("https://"):
                raise SettingsError(f"--progress-url (BERTOP_PROGRESS_URL): must be https:// when the endpoint serves "
                                    f"HTTPS (--progress-cert-dir), got {self.progress_url!r}")
        if self.webhook_port:
            for name in ("tls.crt", "tls.key"):
                path = Path(self.webhook_cert_dir) / name
                if not path.is_file():
                    raise SettingsError(f"--webhook-cert-dir (BERTOP_WEBHOOK_CERT_DIR): {path}: no such file; the "
                                        "webhook serves HTTPS with tls.crt and tls.key (a mounted kubernetes.io/tls Secret)")
