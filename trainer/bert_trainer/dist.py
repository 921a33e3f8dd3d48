"""One small interface over Horovod or a single process.

Horovod is imported lazily, only when ``--horovod`` is given, so the trainer runs
(and its tests pass) on machines where Horovod is not built.
"""

from __future__ import annotations

import logging
from typing import Sequence

import tensorflow as tf

log = logging.getLogger(__name__)


class HorovodUnavailable(RuntimeError):
    """--horovod was requested but horovod.tensorflow cannot be imported."""


class SingleProcess:
    """The trivial world of one rank: collectives are identities."""

    rank = 0
    size = 1
    local_rank = 0

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def allreduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        return list(tensors)

    def allreduce_scalar(self, value: float) -> float:
        return float(value)

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        return None

    def barrier(self) -> None:
        return None


class HorovodWorld(SingleProcess):
    """Horovod collectives: averaged allreduce of gradients, broadcast from rank 0."""

    def __init__(self) -> None:
        try:
            import horovod.tensorflow as hvd  # noqa: PLC0415 - lazy on purpose
        except ImportError as exc:  # pragma: no cover - depends on the build
            raise HorovodUnavailable(
                f"--horovod given but horovod.tensorflow cannot be imported ({exc}); "
                "build it with scripts/build-horovod.sh") from exc
        hvd.init()
        self.hvd = hvd
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        log.info("event=horovod_init rank=%d size=%d local_rank=%d", self.rank, self.size, self.local_rank)

    def allreduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        # grouped_allreduce fuses all gradients into few collective calls.
        return list(self.hvd.grouped_allreduce(list(tensors), op=self.hvd.Average))

    def allreduce_scalar(self, value: float) -> float:
        return float(self.hvd.allreduce(tf.constant(float(value)), op=self.hvd.Average).numpy())

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        self.hvd.broadcast_variables(list(variables), root_rank=0)

    def barrier(self) -> None:
        # A tiny allreduce is a portable barrier across Horovod versions.
        self.allreduce_scalar(0.0)


def create_world(use_horovod: bool) -> SingleProcess:
    """The world the CLI flag asks for; never imports Horovod unless asked."""
    return HorovodWorld() if use_horovod else SingleProcess()
