"""Where a training stage's exports go and what ``--export_formats`` accepts (no TensorFlow).

A stage that trains writes, on rank 0 after its final checkpoint, one folder per format
under its output: ``<output_dir>/export/hf/`` and/or ``<output_dir>/export/savedmodel/``
(:mod:`bert_common.contract`'s EXPORT_FOLDER and format names, which the operator reads
to list the artifacts), and ``"exported": [formats written]`` in results.json.
The writing itself is :mod:`bert_trainer.model.export`.
"""

from __future__ import annotations

import argparse

from bert_common.contract import EXPORT_FOLDER, EXPORT_FORMATS, EXPORT_TRITON
from bert_trainer import storage
from bert_trainer.model.triton_export import TENSORRT_MODES

FLAG_HELP = (f"comma-separated export formats written under <output_dir>/{EXPORT_FOLDER}/<format>/ by rank 0 after "
             f"the final checkpoint: {', '.join(EXPORT_FORMATS)} (Hugging Face folder, TensorFlow SavedModel with a "
             "serving_default signature, Triton model repository of a fine-tuned model); empty (the default): none")
TENSORRT_HELP = ("the triton export's TF-TRT optimization on GPUs: off (the SavedModel as it is, the default) or fp16 "
                 "(TensorRT in half precision, converted when Triton loads the model)")


class ExportFailed(RuntimeError):
    """Training finished but writing an export did not: the run fails (exit 1) instead of reporting success."""


def add_export_flag(parser: argparse.ArgumentParser, *, serves: bool = False) -> None:
    """--export_formats; a task that trains a served head (`serves`) also takes --triton_tensorrt."""
    parser.add_argument("--export_formats", default="", help=FLAG_HELP)
    if serves:
        parser.add_argument("--triton_tensorrt", choices=TENSORRT_MODES, default="off", help=TENSORRT_HELP)


def parse_formats(value: str) -> list[str]:
    """The formats of a comma-separated list, in contract order, each once; ValueError naming an unknown one."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown format {', '.join(map(repr, unknown))} (choose from {', '.join(EXPORT_FORMATS)}, "
                         "comma-separated, or empty for none)")
    return [name for name in EXPORT_FORMATS if name in names]


def check_export_flag(parser: argparse.ArgumentParser, args: argparse.Namespace, *, trains: bool,
                      serves: bool = False) -> None:
    """Replace args.export_formats by the list it names (exit 2 naming the flag). An export is of what the run
    trained, so a run that does not train cannot ask for one; a Triton repository is of a head that answers
    requests (`serves`: glue, squad), so pretraining cannot ask for one."""
    try:
        args.export_formats = parse_formats(args.export_formats)
    except ValueError as exc:
        parser.error(f"--export_formats: {exc}")
    if EXPORT_TRITON in args.export_formats and not serves:
        parser.error(f"--export_formats: {EXPORT_TRITON} serves a fine-tuned model (glue, squad); this task has no "
                     "head that answers requests")
    if args.export_formats and not trains:
        parser.error("--export_formats: exports what this run trains, and it does not train (add --do_train)")


def export_dir(output_dir: str, fmt: str) -> str:
    """``<output_dir>/export/<fmt>``: where a stage's export in `fmt` lies."""
    return storage.join(output_dir, EXPORT_FOLDER, fmt)
