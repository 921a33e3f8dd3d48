"""Reconciling BertTrainingJobs: observe (``observe.py``), decide (``plan.py``), write (``writer.py``).

:class:`Reconciler` runs the three in order for one job at a time; only
``observe`` reads and only the writer writes, so the decisions in between are
pure and unit-tested row by row (tests/operator/test_reconcile.py). ``plan.py``
walks the steps, one module per concern: ``policy_step.py``, ``dependency_step.py``,
``follow.py`` (one stage), ``recovery.py``, ``kueue_step.py``, ``usage.py``.
"""

from .plan import normalized_spec, spec_hash
from .ports import EventSink, MPIJobApi
from .reconciler import Reconciled, Reconciler

__all__ = ["EventSink", "MPIJobApi", "Reconciled", "Reconciler", "normalized_spec", "spec_hash"]
