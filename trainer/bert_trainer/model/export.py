"""A model in each export format (contract.EXPORT_FORMATS): what ``export`` writes from a checkpoint and what a
training stage writes, with ``--export_formats``, under ``<output_dir>/export/<format>/`` when it is done."""

from __future__ import annotations

import logging
import shutil

import tensorflow as tf

from bert_common.contract import EXPORT_HF, EXPORT_SAVEDMODEL, EXPORT_TRITON
from bert_trainer.export_layout import ExportFailed, export_dir
from bert_trainer.model.config import BertConfig
from bert_trainer.model.hf_export import write_hf_export
from bert_trainer.model.savedmodel_export import write_savedmodel
from bert_trainer.model.triton_export import Serving, write_triton
from bert_trainer.scratch import fresh_scratch_dir

log = logging.getLogger(__name__)


def write_export(fmt: str, model: tf.Module, cfg: BertConfig, output_dir: str, scratch_dir: str, *,
                 vocab_file: str | None = None, do_lower_case: bool = False, serving: Serving | None = None) -> list[str]:
    """Write `model` as `fmt` into the folder `output_dir` (local or s3://); returns the URIs written. `serving`
    (the task, its labels and tokenisation) is what a Triton repository needs besides the weights."""
    if fmt == EXPORT_HF:
        named = {name: var.numpy() for name, var in model.named_variables().items()}
        return write_hf_export(named, cfg, output_dir, scratch_dir, vocab_file=vocab_file, do_lower_case=do_lower_case)
    if fmt == EXPORT_SAVEDMODEL:
        return write_savedmodel(model, cfg, output_dir, scratch_dir, vocab_file=vocab_file, do_lower_case=do_lower_case)
    if fmt == EXPORT_TRITON:
        if serving is None:
            raise ValueError("a Triton repository serves a fine-tuned model (glue, squad): this run has no serving head")
        return write_triton(lambda uri: write_savedmodel(model, cfg, uri, scratch_dir, vocab_file=vocab_file,
                                                         do_lower_case=do_lower_case),
                            output_dir, serving, vocab_file)
    raise ValueError(f"unknown export format {fmt!r}")


def export_stage(model: tf.Module, cfg: BertConfig, output_dir: str, formats: list[str], *,
                 vocab_file: str | None = None, do_lower_case: bool = False, serving: Serving | None = None) -> list[str]:
    """Rank 0 at the end of a training stage: each format under ``<output_dir>/export/<format>/``; returns the
    formats written. Any failure is ExportFailed naming the format and folder (the run fails, exit 1)."""
    written = []
    for fmt in formats:
        where = export_dir(output_dir, fmt)
        scratch = fresh_scratch_dir()
        try:
            files = write_export(fmt, model, cfg, where, scratch, vocab_file=vocab_file, do_lower_case=do_lower_case,
                                 serving=serving)
        except Exception as exc:  # whatever broke, the run must not report success
            raise ExportFailed(f"export {fmt} to {where} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("event=export format=%s dir=%s files=%d", fmt, where, len(files))
        written.append(fmt)
    return written

