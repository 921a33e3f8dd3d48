"""bert_trainer: TensorFlow 2 BERT pretraining (NVIDIA recipe) for bert-operator.

The operator renders ``python -m bert_trainer <task> --flags``; everything here is
importable without Horovod, GPUs or network access so it can be tested on a CPU.
"""

from bert_common import __version__

__all__ = ["__version__"]
