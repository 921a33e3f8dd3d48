"""A fine-tuned model as a Triton model repository, the ``triton`` export format (what KServe's Triton runtime loads).

The repository (``<output_dir>/export/triton/``) holds one model folder, named by the task
(:func:`bert_common.contract.serving_model_name`: ``mrpc``, ``cola``, ``squad``)::

    <model>/config.pbtxt               platform tensorflow_savedmodel, the signature's tensors, dynamic batching
    <model>/1/model.savedmodel/        the SavedModel (:mod:`~bert_trainer.model.savedmodel_export`), version 1
    <model>/assets/vocab.txt           the tokenizer's vocabulary
    <model>/assets/serving.json        what the transformer needs to turn text into ids and logits into labels

Triton ignores a model folder's subfolders whose names are not numbers (its model-repository guide, "Model
Versions"), so ``assets/`` rides along without being taken for a version, and the transformer reads it from the
same storage URI the predictor loads. config.pbtxt is text of Triton's ``ModelConfig`` protobuf message; it is
written last, so a repository that has it is whole (as the SavedModel's saved_model.pb).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from bert_common.contract import SERVING_FILE, TRITON_ASSETS, TRITON_VERSION, serving_model_name
from bert_trainer import storage

PLATFORM = "tensorflow_savedmodel"
SAVEDMODEL_FOLDER = "model.savedmodel"  # the file name Triton's TensorFlow backend looks for in a version folder
#: Dynamic batching: requests wait at most QUEUE_DELAY_US for others to make up PREFERRED_BATCH rows (a GPU is
#: several times as fast per row at 16 as at 1 for BERT-base), never more than MAX_BATCH rows in one run.
MAX_BATCH = 32
PREFERRED_BATCH = 16
QUEUE_DELAY_US = 1000
TENSORRT_MODES = ("off", "fp16")
#: The heads served and what their signature returns (savedmodel_export's names); None: as many as the labels.
HEADS: dict[str, dict[str, int | None]] = {"classifier": {"logits": None}, "span": {"start_logits": -1, "end_logits": -1}}
INPUTS = ("input_ids", "input_mask", "segment_ids")


@dataclass(frozen=True)
class Serving:
    """What a served model needs besides its weights: written to assets/serving.json, read by the transformer."""

    #: The fine-tuning task as its flag names it (CoLA, MRPC, MNLI; squad).
    task: str
    #: classifier (GLUE: one label per input) or span (SQuAD: an answer in the context).
    head: str
    #: GLUE's label names in logit order; none for a span head.
    labels: tuple[str, ...]
    max_seq_length: int
    do_lower_case: bool
    #: What a request names its texts (in tokenisation order): sentence, sentence1 and sentence2, question and context.
    fields: tuple[str, ...] = ()
    #: TF-TRT in FP16 on a GPU (Triton's optimization block); off runs the SavedModel as it is.
    tensorrt: str = "off"
    #: A span head's windowing and answer search (doc_stride, max_query_length, n_best_size, max_answer_length,
    #: version_2_with_negative, null_score_diff_threshold), as the squad task ran them.
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return serving_model_name(self.task)

    def outputs(self) -> dict[str, int]:
        """Output name -> its dimension past the batch (-1: the sequence)."""
        return {name: len(self.labels) if dim is None else dim for name, dim in HEADS[self.head].items()}

    def manifest(self) -> dict[str, Any]:
        """serving.json: the tensors as the v2 protocol names their types, shapes with the batch first."""
        return {
            "task": self.task, "model": self.model, "head": self.head, "labels": list(self.labels),
            "max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case, "fields": list(self.fields),
            "inputs": [{"name": name, "datatype": "INT32", "shape": [-1, -1]} for name in INPUTS],
            "outputs": [{"name": name, "datatype": "FP32", "shape": [-1, dim]} for name, dim in self.outputs().items()],
            **({"options": dict(self.options)} if self.options else {}),
        }


def config_pbtxt(serving: Serving) -> str:
    """The model's config.pbtxt (protobuf text of Triton's ModelConfig). Dims exclude the batch, which
    max_batch_size adds: each input is [batch, sequence], any sequence length up to the model's positions."""
    if serving.head not in HEADS:
        raise ValueError(f"head {serving.head!r}: Triton serves {', '.join(HEADS)}")
    if serving.tensorrt not in TENSORRT_MODES:
        raise ValueError(f"tensorrt {serving.tensorrt!r}: one of {', '.join(TENSORRT_MODES)}")
    inputs = ",\n".join(f'  {{ name: "{name}" data_type: TYPE_INT32 dims: [ -1 ] }}' for name in INPUTS)
    outputs = ",\n".join(f'  {{ name: "{name}" data_type: TYPE_FP32 dims: [ {dim} ] }}'
                         for name, dim in serving.outputs().items())
    text = (f'name: "{serving.model}"\nplatform: "{PLATFORM}"\nmax_batch_size: {MAX_BATCH}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{\n  preferred_batch_size: [ {PREFERRED_BATCH} ]\n"
            f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}\n")
    if serving.tensorrt == "fp16":
        # TF-TRT: Triton's TensorFlow backend converts what TensorRT supports when the model loads on a GPU.
        text += ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
                 '      { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } }\n'
                 "    ]\n  }\n}\n")
    return text


def write_triton(write_savedmodel_to, output_dir: str, serving: Serving, vocab_file: str | None) -> list[str]:
    """The repository under `output_dir` (local or s3://); `write_savedmodel_to(uri)` writes the SavedModel
    folder there and returns its URIs. Returns every URI written, config.pbtxt last."""
    if not vocab_file:
        raise ValueError("a Triton export ships the tokenizer's vocab.txt for the transformer: give --vocab_file")
    config = config_pbtxt(serving)  # a bad head or mode fails before anything is written
    model_dir = storage.join(output_dir, serving.model)
    written = list(write_savedmodel_to(storage.join(model_dir, TRITON_VERSION, SAVEDMODEL_FOLDER)))
    assets = storage.join(model_dir, TRITON_ASSETS)
    files = {"vocab.txt": storage.read_bytes(vocab_file),
             SERVING_FILE: (json.dumps(serving.manifest(), indent=2) + "\n").encode()}
    for name, data in files.items():
        storage.write_bytes(storage.join(assets, name), data)
        written.append(storage.join(assets, name))
    storage.write_bytes(storage.join(model_dir, "config.pbtxt"), config.encode())
    written.append(storage.join(model_dir, "config.pbtxt"))
    return written
