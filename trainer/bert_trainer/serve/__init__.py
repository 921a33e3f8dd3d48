"""Serving a fine-tuned model: KServe's Python model server (``kserve``) with the Open Inference Protocol.

A Triton repository (the ``triton`` export, :mod:`bert_trainer.model.triton_export`) is served by two parts, as
KServe's InferenceService runs them: a *predictor* that takes token ids and returns logits over the v2 protocol
(Triton on a cluster; :mod:`~bert_trainer.serve.predictor`, the SavedModel in-process, on one machine), and the
*transformer* (:mod:`~bert_trainer.serve.transformer`) in front of it, which takes text in v1's
``{"instances": [...]}``, tokenises it as training did (:mod:`~bert_trainer.serve.instances`, from the export's
``assets/``: :mod:`~bert_trainer.serve.manifest`) and answers labels or answer spans.
``python -m bert_trainer serve transformer`` runs the transformer alone (the InferenceService's container);
``python -m bert_trainer serve local`` runs both in one server (``bertjob serve --local``).
"""
