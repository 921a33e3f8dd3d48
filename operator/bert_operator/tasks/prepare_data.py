"""prepareData: raw text to sharded pretraining TFRecords, in the folder NVIDIA's scripts name after the settings.

Its output is not `<output>/<stage>` but `<output>/<NVIDIA's set name>/books_wiki_en_corpus`,
so a pretraining job with default phases finds the records without configuration.
"""

from __future__ import annotations

from typing import Iterator

from ..api.checks import check_predictions, check_seq
from ..api.errors import FieldError
from ..api.locations import data_root, in_pod, join
from ..api.models import BertTrainingJobSpec, PrepareDataTask
from ..api.presets import NVIDIA_CORPUS_FOLDER
from ..api.stages import Stage
from .base import OperatorTask
from .flags import number, tokenizer_flags


class PrepareData(OperatorTask):
    name = "prepareData"
    #: The formatted Wikipedia + BookCorpus text: smaller than the recipe's 170 GB+ download.
    dataset_storage = "200Gi"
    field = "prepare_data"
    stage_name = "prepare"
    needs_vocab = True
    local_modules = ("tokenizers",)

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        prep: PrepareDataTask = self.settings(spec)
        yield from check_seq("spec.task.prepareData", prep.max_seq_length, max_positions)
        yield from check_predictions("spec.task.prepareData", prep.max_predictions_per_seq, prep.max_seq_length)
        if prep.shards < spec.resources.workers:
            yield FieldError(
                "spec.task.prepareData.shards",
                f"must be >= resources.workers ({spec.resources.workers}) so every worker writes a shard, got {prep.shards}",
            )

    def output(self, spec: BertTrainingJobSpec, stage: Stage, base: str) -> str:
        folder = self.settings(spec).folder_name(lower_case=spec.model.lower_case)
        return join(base, folder, NVIDIA_CORPUS_FOLDER)

    def trainer_args(self, spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
        task: PrepareDataTask = self.settings(spec)
        return [
            "prepare-data", "--horovod",
            "--input_dir", data_root(spec),
            "--output_dir", self.output(spec, stage, in_pod(spec.output.uri)),
            *tokenizer_flags(spec),
            *(["--do_whole_word_mask"] if task.whole_word_masking else []),
            "--max_seq_length", str(task.max_seq_length),
            "--max_predictions_per_seq", str(task.max_predictions_per_seq),
            "--masked_lm_prob", number(task.masked_lm_prob),
            "--short_seq_prob", number(task.short_seq_prob),
            "--dupe_factor", str(task.dupe_factor),
            "--n_shards", str(task.shards),
            "--test_split", str(task.test_split),
            "--random_seed", str(task.seed),
        ]


TASK = PrepareData()
