"""The BertTrainingJob API: models, validation and the CRD generated from them.

The package imports only the models here; validation (``api.parse``) runs the
task registry's rules (``bert_operator.tasks``), which build on these models,
so it is imported from its own module.
"""

from .errors import FieldError, SpecError
from .models import BertTrainingJob, BertTrainingJobSpec
from .stages import Stage

__all__ = ["BertTrainingJob", "BertTrainingJobSpec", "FieldError", "SpecError", "Stage"]
