"""The compiled core of prepare-data (``_native.c``), when it is built and wanted.

Why optional: the core only makes prepare-data faster; the Python code it replaces stays the reference and the
fallback (a machine without a C compiler, a platform with no wheel, a debugging session), and both give the same
bytes (``tests/data/test_native.py``). ``pip install`` builds it from this repository (``setup.py``,
an optional extension: a failed compile leaves the Python path); ``BERT_TRAINER_PREP_NATIVE=0`` turns it off.
A build whose ABI number is not this file's (a stale in-place build) is ignored, with a warning.
"""

from __future__ import annotations

import functools
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)

#: The ABI number of ``_native.c`` this Python code speaks (NATIVE_ABI there).
ABI = 3
#: Set to 0 (or false/no/off) to use the pure-Python path even where the core is built.
ENV = "BERT_TRAINER_PREP_NATIVE"


@functools.cache
def core() -> ModuleType | None:
    """The compiled module, or None: not built, turned off by ``BERT_TRAINER_PREP_NATIVE``, or stale."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from bert_trainer.prep import _native  # noqa: PLC0415
    except ImportError:
        log.info("event=prep_native_missing fallback=python")
        return None
    if getattr(_native, "ABI", None) != ABI:
        log.warning("event=prep_native_stale abi=%s expected=%s fallback=python (rebuild: pip install -e .)",
                    getattr(_native, "ABI", None), ABI)
        return None
    return _native
