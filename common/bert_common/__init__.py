"""bert_common: what the operator (``bert_operator``) and the trainer (``bert_trainer``) share.

Standard library only, so that each image installs it beside its own package without the other's
dependencies (no pydantic, kopf or jinja2 in the trainer image, no TensorFlow in the operator image):

- :mod:`bert_common.contract`: labels, ``BERTJOB_*`` variables, report fields, export layout;
- :mod:`bert_common.bert_config`: the BERT config field table and the base/large presets, from which both the
  API's ``BertConfig`` (pydantic) and the trainer's ``BertConfig`` (a dataclass) are derived.

``__version__`` is the project's one version: pyproject.toml reads it (``dynamic = ["version"]``), and so do both
packages; the chart and the image tags in the docs are held to it by tests/test_packages.py.
"""

__version__ = "0.1.0"
