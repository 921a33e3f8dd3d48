"""Operator settings, read once from flags and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .render.values import DEFAULT_TRAINER_IMAGE


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
    workers: int = 16
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: object) -> "OperatorSettings":
        env = os.environ
        values: dict[str, object] = {
            "namespaces": tuple(n for n in env.get("BERTOP_NAMESPACES", "").split(",") if n),
            "trainer_image": env.get("BERTOP_TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE),
            "progress_url": env.get("BERTOP_PROGRESS_URL") or None,
            "resync_seconds": float(env.get("BERTOP_RESYNC_SECONDS", 60)),
            "webhook_port": int(env.get("BERTOP_WEBHOOK_PORT", 0)),
            "webhook_cert_dir": env.get("BERTOP_WEBHOOK_CERT_DIR", "/etc/bert-operator/webhook"),
            "progress_stale_seconds": float(env.get("BERTOP_PROGRESS_STALE_SECONDS", 600)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
        return cls(**values)  # type: ignore[arg-type]
