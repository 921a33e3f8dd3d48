"""The BertTrainingJob API: models, validation and the CRD generated from them."""

from .errors import FieldError, SpecError
from .models import BertTrainingJob, BertTrainingJobSpec
from .parse import parse_job, parse_text
from .stages import Stage, stages_of

__all__ = [
    "BertTrainingJob",
    "BertTrainingJobSpec",
    "FieldError",
    "SpecError",
    "Stage",
    "parse_job",
    "parse_text",
    "stages_of",
]
