"""prepareData: raw text to sharded pretraining TFRecords, in the folder NVIDIA's scripts name after the settings.

Its output is not `<output>/<stage>` but `<output>/<NVIDIA's set name>/books_wiki_en_corpus`,
so a pretraining job with default phases finds the records without configuration. One job may make
several sets (phase 1's and phase 2's lengths, as NVIDIA's create_datasets_from_start.sh does), one
stage each, so that a two-phase pretraining job depends on one producer (spec.dataset.fromJob).
"""

from __future__ import annotations

from typing import Any, Iterator

from ..api.checks import check_predictions, check_seq
from ..api.errors import FieldError
from ..api.locations import data_root, in_pod, join, resolved
from ..api.models import BertTrainingJobSpec, PrepareDataTask
from ..api.presets import NVIDIA_CORPUS_FOLDER
from ..api.stages import Stage
from .base import OperatorTask
from .flags import number, tokenizer_flags
from .. import untrusted


class PrepareData(OperatorTask):
    name = "prepareData"
    #: The formatted Wikipedia + BookCorpus text: smaller than the recipe's 170 GB+ download.
    dataset_storage = "200Gi"
    field = "prepare_data"
    stage_name = "prepare"
    needs_vocab = True
    local_modules = ("tokenizers",)

    def stages(self, spec: BertTrainingJobSpec) -> list[Stage]:
        """`prepare` for the first record set, then `prepare-seq<N>` for each of extraSets, one MPIJob each."""
        sets = self.settings(spec).record_sets()
        return [Stage(0, self.stage_name), *(Stage(i, f"{self.stage_name}-seq{s.max_seq_length}")
                                             for i, s in enumerate(sets) if i > 0)]

    def record_set(self, spec: BertTrainingJobSpec, stage: Stage) -> PrepareDataTask:
        """The settings of the one set `stage` makes."""
        return self.settings(spec).record_sets()[stage.index]

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        if spec.output.print_metrics:
            yield FieldError("spec.output.printMetrics", "prints a fine-tuned model's dev metrics (glue, squad); "
                                                         "prepareData has none")
        prep: PrepareDataTask = self.settings(spec)
        yield from check_seq("spec.task.prepareData", prep.max_seq_length, max_positions)
        yield from check_predictions("spec.task.prepareData", prep.max_predictions_per_seq, prep.max_seq_length)
        lengths = [prep.max_seq_length]
        for i, extra in enumerate(prep.extra_sets):
            path = f"spec.task.prepareData.extraSets[{i}]"
            yield from check_seq(path, extra.max_seq_length, max_positions)
            yield from check_predictions(path, extra.max_predictions_per_seq, extra.max_seq_length)
            if extra.max_seq_length in lengths:  # a stage per length: the name must be unique
                yield FieldError(f"{path}.maxSeqLength", f"each set needs its own maxSeqLength; {extra.max_seq_length} "
                                                         f"is already made by this job")
            lengths.append(extra.max_seq_length)
        if prep.shards < spec.resources.workers:
            yield FieldError(
                "spec.task.prepareData.shards",
                f"must be >= resources.workers ({spec.resources.workers}) so every worker writes a shard, got {prep.shards}",
            )
        if spec.output.export_formats:
            yield FieldError("spec.output.exportFormats", "prepareData trains no model, so nothing can be exported; "
                                                          "leave it unset")

    def output(self, spec: BertTrainingJobSpec, stage: Stage, base: str) -> str:
        folder = self.record_set(spec, stage).folder_name(lower_case=spec.model.lower_case)
        return join(base, folder, NVIDIA_CORPUS_FOLDER)

    def trainer_args(self, spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
        task = self.record_set(spec, stage)
        return [
            "prepare-data", "--horovod",
            "--input_dir", data_root(spec),
            "--output_dir", self.output(spec, stage, in_pod(resolved(spec.output.uri))),
            *tokenizer_flags(spec),
            *(["--do_whole_word_mask"] if task.whole_word_masking else []),
            *(["--input_format", task.input_format] if task.input_format != "auto" else []),
            "--max_seq_length", str(task.max_seq_length),
            "--max_predictions_per_seq", str(task.max_predictions_per_seq),
            "--masked_lm_prob", number(task.masked_lm_prob),
            "--short_seq_prob", number(task.short_seq_prob),
            "--dupe_factor", str(task.dupe_factor),
            "--n_shards", str(task.shards),
            "--test_split", str(task.test_split),
            "--random_seed", str(task.seed),
        ]

    def summary(self, results: dict[str, Any]) -> str:
        """What the data job made: instances (training examples) and shards, of its last stage."""
        instances, shards = untrusted.whole(results.get("instances")), untrusted.whole(results.get("shards"))
        parts = (([f"{instances} instances"] if instances is not None else [])
                 + ([f"{shards} shards"] if shards is not None else []))
        return ", ".join(parts)


TASK = PrepareData()
