"""Our models as a TensorFlow SavedModel with a ``serving_default`` signature (TF Serving, Triton).

The signature takes three int32 tensors of shape ``[batch, sequence]`` (any batch, any
sequence length up to the model's max_position_embeddings), as our tokenisation makes them:

* ``input_ids``: WordPiece ids, ``[CLS] A [SEP] (B [SEP])`` then ``[PAD]``;
* ``input_mask``: 1 for a real token, 0 for padding;
* ``segment_ids``: 0 for sentence A (and padding), 1 for sentence B.

and returns float32 outputs, which depend on the head the weights hold (the same table that
picks the Hugging Face architecture, :func:`bert_trainer.model.hf_export.architecture`):

* GLUE classifier (BertForSequenceClassification): ``logits`` ``[batch, num_labels]``, labels in
  the order of the task's label list (CoLA/MRPC ``0, 1``; MNLI ``contradiction, entailment, neutral``);
* SQuAD (BertForQuestionAnswering): ``start_logits`` and ``end_logits``, each ``[batch, sequence]``;
* pretraining (BertForPreTraining): ``mlm_logits`` ``[batch, sequence, vocab_size]``, the masked-LM head
  applied at every position (as Hugging Face's ``prediction_logits``: a client picks the positions it
  masked), and ``nsp_logits`` ``[batch, 2]`` (index 0: B follows A, Google's convention).

Inference mode (no dropout), fp32, whatever precision the model was trained in. ``assets/`` holds
the files the Hugging Face export ships beside its weights: ``config.json`` (architecture, label
count, the BertConfig) and, given a vocab, ``vocab.txt`` and ``tokenizer_config.json``, so a client
tokenises as training did. The folder is built in local scratch and uploaded (local or s3://) with
``saved_model.pb`` last: a folder that has it has its variables.
"""

from __future__ import annotations

import os
import shutil
from typing import Mapping, Sequence

import tensorflow as tf

from bert_trainer import storage
from bert_trainer.model.config import BertConfig
from bert_trainer.model.heads import head_module, heads
from bert_trainer.model.hf_export import architecture, metadata_files

SIGNATURE = "serving_default"
INPUTS = ("input_ids", "input_mask", "segment_ids")
#: The serving outputs of each head (``Head.outputs``), by the Hugging Face architecture name the weights make.
OUTPUTS: Mapping[str, tuple[str, ...]] = {head.architecture: head.outputs for head in heads()}
SAVED_MODEL_PB = "saved_model.pb"


def architecture_of(model: tf.Module) -> str:
    return architecture(model.named_variables())


class ServingModule(tf.Module):
    """The model wrapped with its serving function; ``assets`` are local files shipped in assets/."""

    def __init__(self, model: tf.Module, assets: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.arch = architecture_of(model)
        self.assets = [tf.saved_model.Asset(path) for path in assets]
        spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUTS]
        self.serve = tf.function(self._serve, input_signature=spec)

    def _serve(self, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        """The head's own outputs (its task's ``serve``), looked up when the function is traced."""
        return head_module(self.arch).serve(self.model, input_ids, input_mask, segment_ids)


def write_savedmodel(model: tf.Module, cfg: BertConfig, output_dir: str, scratch_dir: str, *,
                     vocab_file: str | None = None, do_lower_case: bool = False) -> list[str]:
    """Write the SavedModel folder under ``output_dir`` (local or s3://); returns the URIs written."""
    named = model.named_variables()  # the metadata needs names and the classifier's shape, not the values
    assets_dir = os.path.join(scratch_dir, "assets")
    local = os.path.join(scratch_dir, "savedmodel")
    shutil.rmtree(local, ignore_errors=True)
    os.makedirs(assets_dir, exist_ok=True)
    paths = []
    for name, data in metadata_files(named, cfg, vocab_file=vocab_file, do_lower_case=do_lower_case).items():
        paths.append(os.path.join(assets_dir, name))
        with open(paths[-1], "wb") as handle:
            handle.write(data)
    module = ServingModule(model, paths)
    tf.saved_model.save(module, local, signatures={SIGNATURE: module.serve})
    files = sorted(os.path.relpath(os.path.join(root, f), local) for root, _, names in os.walk(local) for f in names)
    files.sort(key=lambda rel: rel == SAVED_MODEL_PB)  # the graph last: its presence means the folder is whole
    written = []
    for rel in files:
        uri = storage.join(output_dir, *rel.split(os.sep))
        storage.upload_file(os.path.join(local, rel), uri)
        written.append(uri)
    return written


def load_serving(path: str):
    """The ``serving_default`` function of a local SavedModel folder and the head (architecture) its outputs name."""
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures[SIGNATURE]
    outputs = set(fn.structured_outputs)
    arch = next((a for a, names in OUTPUTS.items() if set(names) == outputs), None)
    if arch is None:
        raise ValueError(f"{path}: serving_default returns {sorted(outputs)}, none of our heads' outputs")
    return loaded, fn, arch
