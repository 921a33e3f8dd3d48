"""The BertTrainingJob resource as pydantic models: the one source of truth.

The CLI, the operator, the admission webhook and the CRD's OpenAPI schema all
come from these classes. Field names are camelCase on the wire (Kubernetes
convention) and snake_case in Python. Defaults are the NVIDIA recipe's
(NVIDIA's BERT for TensorFlow 2 README and scripts); each description says what a field means and
its default, because `kubectl explain` shows exactly these texts.

Structural checks (types, ranges, enums) live here; rules that relate several
fields live in :mod:`bert_operator.api.rules` so that each broken rule can be
reported under the exact field path it concerns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

from bert_common.bert_config import BERT_PRESETS, FIELDS_BY_NAME, Activation

from .vendored import schema as k8s_schema
from .presets import nvidia_dataset_folder

Precision = Literal["fp32", "fp16", "bf16"]
OptimizerName = Literal["lamb", "adam"]
GlueTaskName = Literal["CoLA", "MRPC", "MNLI"]
SquadVersion = Literal["1.1", "2.0"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
CleanPodPolicy = Literal["None", "Running", "All"]
ModelPreset = Literal["base", "large", "custom"]

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
STORAGE_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
URL_PATTERN = r"^https?://[^\s/@]+(/\S*)?$"
IMAGE_PATTERN = r"^[^\s]+$"
#: A BertTrainingJob of the same namespace (a DNS-1035 label, written so that its meaning differs from the name's).
JOB_REF_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"

#: What each pattern means, in the words error messages use.
PATTERN_MEANINGS: dict[str, str] = {
    QUANTITY_PATTERN: "a Kubernetes quantity such as 500m, 8 or 16Gi",
    STORAGE_URI_PATTERN: "s3://bucket/prefix or pvc://claim/path",
    DNS_LABEL_PATTERN: "a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)",
    DNS_1035_PATTERN: "a DNS-1035 label (lower-case letters, digits and '-', starting with a letter)",
    DNS_SUBDOMAIN_PATTERN: "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')",
    URL_PATTERN: "an http:// or https:// URL without user:password@ (keys belong in credentialsSecret) or spaces",
    IMAGE_PATTERN: "an image reference without spaces, e.g. registry/name:tag",
    JOB_REF_PATTERN: ("the name of a BertTrainingJob in this job's namespace (a DNS-1035 label; a job of another "
                      "namespace, namespace/name, cannot be referenced)"),
}

#: A Kubernetes resource quantity such as "1Gi", "500m" or "8".
def _number_to_text(value: Any) -> Any:
    """YAML users write `cpu: 8`; Kubernetes quantities are int-or-string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, "g")
    return value


Quantity = Annotated[
    str,
    StringConstraints(pattern=QUANTITY_PATTERN),
    BeforeValidator(_number_to_text),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]
#: Object-store or volume location: s3://bucket/prefix or pvc://claim/path.
StorageUri = Annotated[
    str,
    StringConstraints(pattern=STORAGE_URI_PATTERN),
]
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]
#: A core/v1 Affinity: its schema is Kubernetes' own (k8s_types.py), in the CRD and in the rules alike.
Affinity = Annotated[dict[str, Any], WithJsonSchema(k8s_schema("affinity-v1"))]
DnsSubdomain = Annotated[
    str,
    StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253),
]
#: The name of another BertTrainingJob of the same namespace, whose outputs this job takes as inputs.
JobRef = Annotated[str, StringConstraints(pattern=JOB_REF_PATTERN, max_length=63)]
ExportFormat = Literal["hf", "savedmodel", "triton"]


class ApiModel(BaseModel):
    """Base for every spec object: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # No coercion: '4' is not 4, true is not 1, and .nan/.inf are not numbers; YAML and JSON both
        # carry real types, and a quoted number is more often a mistake than a wish.
        strict=True,
        allow_inf_nan=False,
    )


# --------------------------------------------------------------------------- model


def _bert_field(name: str) -> Any:
    """A BertConfig field as bert_common's table declares it: default, bounds, description."""
    field = FIELDS_BY_NAME[name]
    bounds = field.bounds()
    return Field(field.default, description=field.description, ge=bounds.get("ge"), gt=bounds.get("gt"),
                 le=bounds.get("le"), lt=bounds.get("lt"))


# Every field's default, bounds and description come from bert_common.bert_config, which the trainer's config
# reads too; tests/test_packages.py holds this field list and its types to that table.
class BertConfig(BaseModel):
    """Google's bert_config.json, field for field (snake_case, as Google wrote it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    vocab_size: int = _bert_field("vocab_size")
    hidden_size: int = _bert_field("hidden_size")
    num_hidden_layers: int = _bert_field("num_hidden_layers")
    num_attention_heads: int = _bert_field("num_attention_heads")
    intermediate_size: int = _bert_field("intermediate_size")
    hidden_act: Activation = _bert_field("hidden_act")
    hidden_dropout_prob: float = _bert_field("hidden_dropout_prob")
    attention_probs_dropout_prob: float = _bert_field("attention_probs_dropout_prob")
    max_position_embeddings: int = _bert_field("max_position_embeddings")
    type_vocab_size: int = _bert_field("type_vocab_size")
    initializer_range: float = _bert_field("initializer_range")


class CheckpointRef(ApiModel):
    """A job of the same namespace whose final checkpoint this job starts from."""

    from_job: JobRef = Field(..., description="The BertTrainingJob (same namespace) whose checkpoint to start from.")
    stage: DnsLabel | None = Field(
        None, description="Its stage whose checkpoint to take, e.g. phase1; default its last stage (phase2 of NVIDIA's two "
                          "phases).")


class VocabRef(ApiModel):
    """A job of the same namespace whose vocab this job uses."""

    from_job: JobRef = Field(..., description="The BertTrainingJob (same namespace) whose spec.model.vocab to use.")


class ModelSpec(ApiModel):
    """Which BERT to train or fine-tune and where its vocabulary and weights come from."""

    preset: ModelPreset = Field(
        "base",
        description="base (L-12 H-768 A-12), large (L-24 H-1024 A-16), or custom (then config is required). Default base.",
    )
    config: BertConfig | None = Field(
        None, description="A Google bert_config.json (snake_case fields); only with preset: custom."
    )
    vocab: StorageUri | None = Field(
        None,
        description="WordPiece vocab.txt (s3:// or pvc://). Required by prepareData, squad and glue.",
    )
    lower_case: bool = Field(True, description="Whether the vocabulary is uncased (lower-case and strip accents). Default true.")
    init_checkpoint: StorageUri | None = Field(
        None,
        description=(
            "Weights to start from: this project's checkpoint folder, a Google TF1 BERT checkpoint, or a "
            "Hugging Face BERT safetensors file. Required by squad and glue (or initCheckpointFrom)."
        ),
    )
    # A structural CRD schema cannot hold a string-or-object field, so the reference is a field of its own,
    # as core/v1's env value and valueFrom are.
    init_checkpoint_from: CheckpointRef | None = Field(
        None,
        description=(
            "Start from the final checkpoint of another job of this namespace (instead of initCheckpoint): this job "
            "waits until that job Succeeded, then reads its stage's output folder."
        ),
    )
    vocab_from: VocabRef | None = Field(
        None,
        description="Use the vocab of another job of this namespace (instead of vocab), e.g. the prepareData job "
                    "that tokenized the pretraining data; this job waits until that job Succeeded.",
    )

    def resolved_config(self) -> BertConfig:
        """The effective bert_config: the preset's, or the custom one."""
        if self.preset == "custom":
            return self.config or BertConfig()
        return BertConfig.model_validate(BERT_PRESETS[self.preset])


# ----------------------------------------------------------------------- optimizer


class OptimizerSpec(ApiModel):
    """Optimizer algorithm and its hyperparameters shared by every phase."""

    name: OptimizerName | None = Field(
        None,
        description="lamb (NVIDIA's NVLAMB) or adam (AdamW). Default lamb for pretrain, adam for squad and glue.",
    )
    weight_decay_rate: float = Field(0.01, ge=0.0, lt=1.0, description="Decoupled weight decay (not on LayerNorm or bias). "
                                                                       "Default 0.01.")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="First-moment decay. Default 0.9.")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Second-moment decay. Default 0.999.")
    epsilon: float = Field(1e-6, gt=0.0, description="Denominator epsilon. Default 1e-6.")


# ---------------------------------------------------------------------------- tasks


class PretrainPhase(ApiModel):
    """One pretraining phase: its sequence length, share of steps and per-phase hyperparameters."""

    max_seq_length: int = Field(128, ge=8, le=4096, description="Tokens per sequence. Default 128 (phase 1); NVIDIA's phase 2 "
                                                                "uses 512.")
    max_predictions_per_seq: int = Field(20, ge=1, description="Masked positions per sequence. Default 20 (phase 1); 80 for seq "
                                                               "512.")
    steps_fraction: float = Field(
        ..., gt=0.0, le=1.0, description="Share of pretrain.trainSteps this phase runs; the phases' shares sum to 1."
    )
    batch_size_per_gpu: int = Field(16, ge=1, description="Sequences per GPU per micro-batch. Global batch = this x GPUs x "
                                                          "accumulationSteps.")
    learning_rate: float = Field(7.5e-4, gt=0.0, le=1.0, description="Peak learning rate. Default 7.5e-4 (phase 1), 5e-4 (phase "
                                                                     "2).")
    warmup_steps: int = Field(2000, ge=0, description="Linear warmup steps. Default 2000 (phase 1), 200 (phase 2).")
    accumulation_steps: int = Field(
        128, ge=1, description="Micro-batches accumulated per optimizer step (one allreduce each). Default 128 (phase 1), 512 "
                               "(phase 2)."
    )
    data_path: str | None = Field(
        None,
        description=(
            "Folder under dataset.uri holding training/ and test/ TFRecords. Default: NVIDIA's folder name for this "
            "maxSeqLength and maxPredictionsPerSeq with prepareData's defaults, then books_wiki_en_corpus."
        ),
    )


def _nvidia_two_phases() -> list[PretrainPhase]:
    """NVIDIA's two-phase LAMB recipe: 90% of steps at 128 tokens, 10% at 512."""
    return [
        PretrainPhase(
            max_seq_length=128, max_predictions_per_seq=20, steps_fraction=0.9, batch_size_per_gpu=16,
            learning_rate=7.5e-4, warmup_steps=2000, accumulation_steps=128,
        ),
        PretrainPhase(
            max_seq_length=512, max_predictions_per_seq=80, steps_fraction=0.1, batch_size_per_gpu=4,
            learning_rate=5e-4, warmup_steps=200, accumulation_steps=512,
        ),
    ]


class PretrainTask(ApiModel):
    """Masked-LM + next-sentence pretraining, one MPIJob per phase, phase n+1 starting from phase n's weights."""

    train_steps: int = Field(7820, ge=1, description="Optimizer steps over all phases. Default 7820.")
    phases: list[PretrainPhase] = Field(
        default_factory=_nvidia_two_phases,
        min_length=1,
        max_length=4,
        description="Phases in order. Default NVIDIA's two-phase LAMB: seq 128 / 20 predictions for 90% of steps, then seq 512 / "
                    "80 for 10%.",
    )
    eval_batch_size_per_gpu: int = Field(8, ge=1, description="Sequences per GPU when evaluating. Default 8.")
    save_checkpoints_steps: int = Field(100, ge=1, description="Checkpoint every this many optimizer steps. Default 100.")

    def phase_steps(self) -> list[int]:
        """Optimizer steps of each phase; the last phase takes the rounding remainder."""
        steps = [round(self.train_steps * phase.steps_fraction) for phase in self.phases[:-1]]
        return [*steps, self.train_steps - sum(steps)]


#: The dev metrics a sweep can select by (the trainer's names in results.json): GLUE's accuracy, f1 (MRPC) and mcc
#: (CoLA); SQuAD's exact_match and f1.
SweepMetric = Literal["accuracy", "f1", "mcc", "exact_match"]
#: The BERT paper's fine-tuning learning rates (Devlin et al. 2019, appendix A.3): the best on dev is picked.
PAPER_LEARNING_RATES = (5e-5, 4e-5, 3e-5, 2e-5)
#: The most trials one sweep runs (each is an MPIJob).
MAX_TRIALS = 64


class SweepSelect(ApiModel):
    """How the best trial is chosen: by a dev metric."""

    metric: SweepMetric | None = Field(
        None, description="Dev metric that picks the best trial. Default the task's main one: mcc (CoLA), f1 (MRPC, "
                          "SQuAD), accuracy (MNLI).")
    goal: Literal["max", "min"] = Field("max", description="Whether a higher (max) or lower (min) metric is better. "
                                                           "Default max.")


class SweepSpec(ApiModel):
    """Fine-tuning as the BERT paper does it: one trial per combination of the lists, each its own MPIJob
    (<job>-t<k>) and output folder, the best on dev chosen. A list left out holds the task's own value."""

    learning_rates: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: list(PAPER_LEARNING_RATES), min_length=1, max_length=16,
        description="Peak learning rates to try. Default the paper's 5e-5, 4e-5, 3e-5, 2e-5.")
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        None, min_length=1, max_length=16, description="Random seeds (restarts) per setting. Default one: 12345.")
    epochs: list[Annotated[float, Field(gt=0.0, le=100.0)]] | None = Field(
        None, min_length=1, max_length=16, description="Training epochs to try. Default the task's epochs.")
    batch_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=1, max_length=16, description="Batch sizes per GPU to try. Default the task's batchSizePerGpu.")
    max_parallel: int = Field(1, ge=1, le=MAX_TRIALS, description="Trials running at once (each an MPIJob with the "
                                                                  "job's workers and GPUs). Default 1.")
    select: SweepSelect = Field(default_factory=SweepSelect, description="How the best trial is chosen.")
    min_succeeded: int = Field(1, ge=1, le=MAX_TRIALS, description="Trials that must succeed for the sweep to succeed "
                                                                   "(a failed trial does not fail it otherwise). "
                                                                   "Default 1.")
    early_stop: bool = Field(False, description="glue: stop a trial that, after its first epoch, predicts one class for "
                                                "every dev example (the majority-class baseline) while another trial "
                                                "is earlyStopMargin better by the selected metric. Default false.")
    early_stop_margin: float = Field(0.05, gt=0.0, le=100.0, description="How much better (in the selected metric's "
                                                                         "units) another trial must be after its first "
                                                                         "epoch. Default 0.05.")
    keep_trial_checkpoints: bool = Field(
        True, description="false: once the sweep has succeeded, a cleanup Job run with the output's credentials deletes "
                          "the checkpoints/ folder of every trial but the best (their results and exports stay); "
                          "status.trialCleanup follows it. Default true: every trial keeps output.keepCheckpoints.")

    def trial_count(self, epochs: float, batch_size: int) -> int:
        return (len(self.learning_rates) * len(self.seeds or [0]) * len(self.epochs or [epochs])
                * len(self.batch_sizes or [batch_size]))


class SquadTask(ApiModel):
    """SQuAD question answering fine-tuning, scored by exact match and F1."""

    version: SquadVersion = Field("1.1", description="1.1, or 2.0 (with unanswerable questions). Default 1.1.")
    train_file: str | None = Field(None, description="Training JSON under dataset.uri. Default train-v<version>.json.")
    predict_file: str | None = Field(None, description="Evaluation JSON under dataset.uri. Default dev-v<version>.json.")
    max_seq_length: int = Field(384, ge=8, le=4096, description="Tokens per feature. Default 384.")
    doc_stride: int = Field(128, ge=1, description="Stride between overlapping context windows. Default 128.")
    max_query_length: int = Field(64, ge=1, description="Longest question in tokens. Default 64.")
    epochs: float = Field(2.0, gt=0.0, le=100.0, description="Training epochs. Default 2.")
    batch_size_per_gpu: int = Field(8, ge=1, description="Features per GPU per step. Default 8.")
    learning_rate: float = Field(5e-6, gt=0.0, le=1.0, description="Peak learning rate. Default 5e-6.")
    warmup_proportion: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps for linear warmup. Default 0.1.")
    null_score_diff_threshold: float = Field(0.0, description="v2.0 only: predict no answer when null score minus best span "
                                                              "exceeds this. Default 0.")
    sweep: SweepSpec | None = Field(None, description="Run a sweep of learning rates, seeds, epochs and batch sizes, "
                                                      "one trial each, and keep the best on dev.")


class GlueTask(ApiModel):
    """GLUE sentence(-pair) classification fine-tuning."""

    task_name: GlueTaskName = Field("MRPC", description="CoLA (Matthews corr.), MRPC (accuracy, F1) or MNLI (matched/mismatched "
                                                        "accuracy). Default MRPC.")
    data_dir: str | None = Field(None, description="Folder under dataset.uri with train.tsv and dev*.tsv. Default the task name.")
    max_seq_length: int = Field(128, ge=8, le=4096, description="Tokens per example. Default 128.")
    epochs: float = Field(3.0, gt=0.0, le=100.0, description="Training epochs. Default 3.")
    batch_size_per_gpu: int = Field(32, ge=1, description="Examples per GPU per step. Default 32.")
    learning_rate: float = Field(2e-5, gt=0.0, le=1.0, description="Peak learning rate. Default 2e-5.")
    warmup_proportion: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps for linear warmup. Default 0.1.")
    sweep: SweepSpec | None = Field(None, description="Run a sweep of learning rates, seeds, epochs and batch sizes, "
                                                      "one trial each, and keep the best on dev.")


class RecordSet(ApiModel):
    """The lengths of one more set of pretraining records."""

    max_seq_length: int = Field(..., ge=8, le=4096, description="Tokens per instance, e.g. 512 for phase 2.")
    max_predictions_per_seq: int = Field(..., ge=1, description="Masked positions per instance, e.g. 80 for phase 2.")


class PrepareDataTask(ApiModel):
    """Raw text (Wikipedia extracts, books) to sharded pretraining TFRecords in NVIDIA's layout."""

    input_format: Literal["auto", "wikipedia", "books", "bert"] = Field(
        "auto",
        description=(
            "How the text under dataset.uri is laid out: wikipedia (WikiExtractor <doc> blocks), books (plain "
            "text, one book per file), or bert (one sentence per line and a blank line between documents, the "
            "input of Google's and NVIDIA's create_pretraining_data.py). Default auto: detected per file."
        ),
    )
    max_seq_length: int = Field(128, ge=8, le=4096, description="Tokens per instance. Default 128 (512 for phase 2 data).")
    max_predictions_per_seq: int = Field(20, ge=1, description="Masked positions per instance. Default 20 (80 for phase 2 data).")
    masked_lm_prob: float = Field(0.15, gt=0.0, lt=1.0, description="Share of tokens masked. Default 0.15.")
    short_seq_prob: float = Field(0.1, ge=0.0, le=1.0, description="Share of instances made shorter than maxSeqLength. Default "
                                                                   "0.1.")
    dupe_factor: int = Field(5, ge=1, le=100, description="Passes over the corpus with different masks. Default 5.")
    shards: int = Field(1472, ge=1, le=100000, description="Output shards (files) for training and test together. Default 1472.")
    test_split: int = Field(10, ge=0, le=50, description="Percent of shards held out for evaluation. Default 10.")
    seed: int = Field(12345, ge=0, description="Random seed; the same seed gives the same records. Default 12345.")
    whole_word_masking: bool = Field(False, description="Mask whole words rather than single WordPieces. Default false.")
    # NVIDIA's create_datasets_from_start.sh makes phase 1's and phase 2's records from one corpus; one job
    # that does the same is one producer that a two-phase pretraining job can depend on.
    extra_sets: list[RecordSet] = Field(
        default_factory=list, max_length=3,
        description=(
            "Further record sets made from the same text with other lengths, e.g. [{maxSeqLength: 512, "
            "maxPredictionsPerSeq: 80}] for phase 2 of NVIDIA's recipe; one MPIJob each (stage prepare-seq<N>), "
            "after the first set's (stage prepare). Every other setting is shared."
        ),
    )

    def folder_name(self, *, lower_case: bool) -> str:
        """NVIDIA's name for the TFRecord set these settings produce."""
        return nvidia_dataset_folder(
            lower_case=lower_case, max_seq_length=self.max_seq_length,
            max_predictions_per_seq=self.max_predictions_per_seq, masked_lm_prob=self.masked_lm_prob,
            random_seed=self.seed, dupe_factor=self.dupe_factor, shards=self.shards, test_split=self.test_split,
        )

    def record_sets(self) -> list["PrepareDataTask"]:
        """Each set this job makes, as the settings of a one-set job: the first, then extraSets in order."""
        return [self, *(self.model_copy(update={"max_seq_length": extra.max_seq_length,
                                                "max_predictions_per_seq": extra.max_predictions_per_seq,
                                                "extra_sets": []}) for extra in self.extra_sets)]


class TaskSpec(ApiModel):
    """What the job does: exactly one task, each a field here (its order is the order tasks are listed in)."""

    pretrain: PretrainTask | None = Field(None, description="BERT pretraining (masked LM + next sentence).")
    squad: SquadTask | None = Field(None, description="SQuAD v1.1/v2.0 fine-tuning.")
    glue: GlueTask | None = Field(None, description="GLUE CoLA/MRPC/MNLI fine-tuning.")
    prepare_data: PrepareDataTask | None = Field(None, description="Turn raw text into pretraining TFRecords.")


#: The keys under spec.task as users write them: TaskSpec's fields are the list of tasks, so what lists them
#: (descriptions here, the CRD's printer column, the task registry's order) derives from them.
_TASK_KEYS = [info.alias or name for name, info in TaskSpec.model_fields.items()]


# ----------------------------------------------------------------- infrastructure


class Toleration(ApiModel):
    """A core/v1 Toleration."""

    key: str | None = Field(None, description="Taint key to tolerate; empty with Exists matches every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="Taint value to match with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(None, description="Taint effect to match; "
                                                                                                    "empty matches all.")
    toleration_seconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


class PodTemplateMeta(ApiModel):
    """Metadata a platform asks pods to carry; the operator's own keys are refused (api/rules.py)."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels for launcher and worker pods, e.g. team or cost-center."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations for launcher and worker pods, e.g. kueue.x-k8s.io/podset-required-topology.",
    )


class ResourcesSpec(ApiModel):
    """How many machines and what each worker pod asks for."""

    workers: int = Field(1, ge=1, le=1024, description="Worker pods (nodes). Default 1.")
    gpus_per_worker: int = Field(
        8, ge=0, le=16, description="nvidia.com/gpu per worker, one MPI rank each; 0 runs one CPU rank per worker. Default 8."
    )
    cpu: Quantity | None = Field(None, description="CPU request and limit per worker, e.g. '32'.")
    memory: Quantity | None = Field(None, description="Memory request and limit per worker, e.g. '400Gi'.")
    shm_size: Quantity = Field("1Gi", description="Size of the in-memory /dev/shm volume (NCCL, data loaders). Default 1Gi.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels worker and launcher pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations for worker and launcher pods.")
    affinity: Affinity | None = Field(None, description="A core/v1 Affinity for the worker pods.")
    priority_class_name: DnsSubdomain | None = Field(None, description="PriorityClass of the pods.")
    scheduler_name: DnsSubdomain | None = Field(
        None,
        description=(
            "Scheduler of the pods, e.g. volcano or scheduler-plugins-scheduler (gang scheduling: see "
            "runPolicy.schedulingPolicy)."
        ),
    )
    pod_template: PodTemplateMeta | None = Field(
        None, description="Labels and annotations added to the launcher and worker pods (cost labels, Kueue topology)."
    )
    dataset_storage: Quantity | None = Field(
        None,
        description=(
            "Local disk for an s3:// dataset synced into each worker: the sizeLimit of its emptyDir and the "
            "ephemeral-storage request of the worker's sync and main containers. Default per task, sized from "
            "the recipe's data: pretrain 400Gi per phase (one phase's TFRecords of the 170 GB+ Wikipedia and "
            "BookCorpus corpus), prepareData 200Gi (that corpus as text), glue 8Gi (MNLI, the largest GLUE task, "
            "is under 1 GB), squad 2Gi (SQuAD's JSON files are under 100 MB). Unused for a pvc:// dataset."
        ),
    )

    def total_processes(self) -> int:
        """MPI ranks: one per GPU, or one per worker for CPU jobs."""
        return self.workers * max(self.gpus_per_worker, 1)


class StoreSpec(ApiModel):
    """An object store or volume location and how to reach it."""

    uri: StorageUri | None = Field(None, description="s3://bucket/prefix or pvc://claim/path.")
    endpoint: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = Field(
        None, description="S3 endpoint URL for MinIO, Ceph or another S3-compatible store; default AWS."
    )
    region: str | None = Field(None, description="S3 region; default the SDK's (us-east-1).")
    credentials_secret: DnsSubdomain | None = Field(
        None, description="Secret in the job's namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Never inline "
                          "keys."
    )


class DatasetSpec(StoreSpec):
    """Where the job's input lives; staged into each worker before training starts. Exactly one of uri, fromJob."""

    uri: StorageUri | None = Field(
        None, description="s3://bucket/prefix (synced into the workers) or pvc://claim/path (mounted read-only).")
    from_job: JobRef | None = Field(
        None,
        description=(
            "Read the records a prepareData job of this namespace made (instead of uri): this job waits until that "
            "job Succeeded; each pretraining phase reads the set with its maxSeqLength and maxPredictionsPerSeq. "
            "endpoint, region and credentialsSecret default to that job's output's."
        ),
    )


class OutputSpec(StoreSpec):
    """Where checkpoints, progress.json, results.json and logs go; one sub-folder per stage."""

    uri: StorageUri | None = Field(
        None, description=(
            "s3://bucket/prefix or pvc://claim/path for checkpoints, progress and results. Required, unless a "
            "BertTrainingPolicy selecting the namespace gives it (defaults.output): so the schema leaves it optional."))
    keep_checkpoints: int = Field(
        3, ge=0, le=1000,
        description=(
            "Checkpoints each stage keeps under its output folder: older ones are deleted after each save (never the "
            "one a rerun resumed from, never the newest, which is the final one at the end). 0 keeps all. BERT-Large "
            "with LAMB writes about 4 GB per checkpoint. Default 3."
        ),
    )
    export_formats: list[ExportFormat] | None = Field(
        None, max_length=3,
        description=(
            "What each training stage exports at its end under <stage output>/export/<format>/, listed in "
            "status.results.artifacts: hf (a Hugging Face folder: config.json, model.safetensors, vocab.txt, "
            "tokenizer_config.json), savedmodel (a TensorFlow SavedModel with a serving_default signature for "
            "TF Serving) and triton (squad and glue only: a Triton model repository, <model>/config.pbtxt, "
            "<model>/1/model.savedmodel/ and the transformer's <model>/assets/, <model> being the task's name in "
            "lower case or squad). Default [hf, savedmodel, triton] for squad and glue, [hf] for pretrain; [] exports "
            "nothing."
        ),
    )
    print_metrics: bool = Field(
        False, description="glue and squad: print the final dev metrics as name=value lines on the launcher's output "
                           "(accuracy=0.8652), as Katib's StdOut metrics collector reads them. Default false.")


#: The MPI Operator's int32 fields (its CRD's format: int32).
INT32_MAX = 2**31 - 1
#: An int32 field of the MPIJob: a larger value is refused by the MPI Operator's CRD after `validate` said yes.
Int32 = Annotated[int, Field(le=INT32_MAX)]


class SchedulingPolicySpec(ApiModel):
    """The MPIJob's runPolicy.schedulingPolicy (MPI Operator v0.8), field for field: the PodGroup of a gang scheduler."""

    min_available: Int32 | None = Field(
        None, ge=1,
        description=(
            "Pods the PodGroup needs before any runs (minMember), at most resources.workers. Default resources.workers "
            "on every MPIJob: the pods that exist while the gang waits (the launcher is created only once the workers "
            "are ready, so the MPI Operator's own default, workers + 1, would never be met)."
        ),
    )
    queue: DnsSubdomain | None = Field(None, description="Volcano Queue of the PodGroup (volcano only).")
    min_resources: dict[str, Quantity] | None = Field(
        None, description="Resources the PodGroup needs before any pod runs, e.g. {nvidia.com/gpu: 32}. Default the MPI "
                          "Operator's sum."
    )
    priority_class: DnsSubdomain | None = Field(
        None, description="PriorityClass of the PodGroup (volcano only); default resources.priorityClassName."
    )
    schedule_timeout_seconds: Int32 | None = Field(
        None, ge=0, description="Seconds the gang may wait to be scheduled (scheduler-plugins only). Default the scheduler's."
    )


class RunPolicySpec(ApiModel):
    """Passed through to the MPIJob's runPolicy (maxRestarts is the operator's own)."""

    suspend: bool = Field(False, description="Create the MPIJob suspended (no pods); flip to false to start. Default false.")
    backoff_limit: Int32 | None = Field(
        None, ge=0,
        description=(
            "Times the launcher pod is re-created before its stage fails. Default 0: a failed launcher fails the "
            "stage at once, with the trainer's error in the launcher's termination message, and the operator "
            "decides whether to re-create the stage (maxRestarts)."
        ),
    )
    active_deadline_seconds: int | None = Field(None, ge=1, description="Seconds a stage may run before it is failed.")
    ttl_seconds_after_finished: Int32 | None = Field(None, ge=0, description="Seconds after which a finished MPIJob is deleted.")
    clean_pod_policy: CleanPodPolicy = Field("Running", description="Pods to delete when a stage ends: None, Running or All. "
                                                                    "Default Running.")
    max_restarts: int = Field(
        3, ge=0, le=100,
        description=(
            "Times the operator re-creates a stage whose MPIJob failed for an infrastructure reason (a pod evicted or "
            "preempted, a node lost), with exponential backoff; the trainer resumes from its newest checkpoint. A "
            "failure of the job's own making (bad input, a trainer error) is never retried. Default 3."
        ),
    )
    scheduling_policy: SchedulingPolicySpec | None = Field(
        None, description="Gang scheduling (the MPIJob's runPolicy.schedulingPolicy); needs a gang-scheduling MPI Operator."
    )


# --------------------------------------------------------------------- serving

ServeRuntime = Literal["triton", "python"]
TensorRT = Literal["off", "fp16"]
#: The most replicas a job's InferenceService may ask for (a policy's limits.maxServeReplicas may lower it).
MAX_SERVE_REPLICAS = 100


class ServeResources(ApiModel):
    """What each predictor replica asks for (request and limit alike); the transformer gets a small fixed share."""

    cpu: Quantity | None = Field(None, description="CPU per predictor replica, e.g. '4'. Default KServe's (1).")
    memory: Quantity | None = Field(None, description="Memory per predictor replica, e.g. '8Gi'. Default KServe's (2Gi).")
    gpus: int = Field(0, ge=0, le=8, description="nvidia.com/gpu per predictor replica; tensorrt: fp16 needs one. Default 0.")


class ServeSpec(ApiModel):
    """Serve the fine-tuned model once the job has succeeded: one KServe InferenceService (Triton predictor on the
    job's triton export, and a transformer of the trainer image that turns text into labels or answer spans)."""

    replicas: int | None = Field(
        None, ge=1, le=MAX_SERVE_REPLICAS,
        description="A fixed number of replicas of each component (minReplicas = maxReplicas); instead of "
                    "minReplicas/maxReplicas. Default 1.")
    min_replicas: int | None = Field(
        None, ge=0, le=MAX_SERVE_REPLICAS,
        description="Fewest replicas the autoscaler keeps; 0 scales to zero when idle (KServe's Serverless mode).")
    max_replicas: int | None = Field(
        None, ge=1, le=MAX_SERVE_REPLICAS, description="Most replicas the autoscaler makes; at least minReplicas.")
    resources: ServeResources = Field(default_factory=ServeResources, description="Per predictor replica.")
    runtime: ServeRuntime = Field(
        "triton", description="triton (KServe's Triton runtime on the triton export) or python (the trainer image's "
                              "own predictor, TensorFlow in-process, the same v2 protocol). Default triton.")
    service_account_name: DnsSubdomain | None = Field(
        None, description="ServiceAccount of the InferenceService's pods: KServe's storage initializer reads the "
                          "model repository with the S3 Secret it lists (KServe's serving.kserve.io/s3-* annotations). "
                          "Default the namespace's default ServiceAccount.")
    tensorrt: TensorRT = Field(
        "off", description="fp16: Triton optimizes the model with TF-TRT in FP16 (needs triton and resources.gpus). "
                           "Default off.")

    def replica_bounds(self) -> tuple[int, int]:
        """(minReplicas, maxReplicas) as rendered: replicas fixes both; unset ones default to 1 and minReplicas."""
        if self.replicas is not None:
            return self.replicas, self.replicas
        low = 1 if self.min_replicas is None else self.min_replicas
        return low, max(self.max_replicas if self.max_replicas is not None else max(low, 1), 1)


class BertTrainingJobSpec(ApiModel):
    """The desired BERT training run."""

    task: TaskSpec = Field(..., description=f"What to run: exactly one of {', '.join(_TASK_KEYS)}.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="BERT size, vocabulary and starting weights.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="Optimizer and its hyperparameters.")
    precision: Precision = Field("fp16", description="fp32, fp16 (automatic mixed precision, dynamic loss scaling) or bf16. "
                                                     "Default fp16.")
    xla: bool = Field(True, description="Compile the training step with XLA. Default true.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Workers, GPUs and pod resources.")
    dataset: DatasetSpec = Field(..., description="Input data location.")
    output: OutputSpec = Field(
        default_factory=OutputSpec,
        description="Results location; a BertTrainingPolicy's defaults.output may give it (its uri is then not required).")
    image: Annotated[str, StringConstraints(pattern=IMAGE_PATTERN, max_length=1024)] | None = Field(
        None, description="Trainer image; default the operator's configured trainer image.")
    image_pull_policy: PullPolicy = Field("IfNotPresent", description="Always, IfNotPresent or Never. Default IfNotPresent.")
    image_pull_secrets: list[DnsSubdomain] = Field(default_factory=list, description="Secret names for pulling the image.")
    templates: list[DnsLabel] = Field(
        default_factory=list, max_length=8,
        description="Job templates of the platform (overlays on the MPIJobs: devices, sidecars, volumes) by name, "
                    "applied in order after those a BertTrainingPolicy forces; only names a policy of the namespace "
                    "allows (its templates.allowed).")
    run_policy: RunPolicySpec = Field(default_factory=RunPolicySpec, description="Retry, deadline, cleanup and suspend settings.")
    queue_name: DnsSubdomain | None = Field(
        None,
        description=(
            "Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label. Each stage's MPIJob is then created suspended "
            "and Kueue decides when it runs (runPolicy.suspend deactivates the Kueue Workload instead)."
        ),
    )
    workload_priority_class_name: DnsSubdomain | None = Field(
        None,
        description="Kueue WorkloadPriorityClass (only with queueName); sets the kueue.x-k8s.io/priority-class label.",
    )
    serve: ServeSpec | None = Field(
        None,
        description="Serve the model once the job has succeeded (glue and squad only): a KServe InferenceService "
                    "owned by the job, reported in status.serving. May be added, changed or removed after the job "
                    "started; removing it deletes the InferenceService.")


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the API server's own fields pass untouched."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, StringConstraints(pattern=DNS_1035_PATTERN, max_length=63)] = Field(
        ..., description="DNS-1035 label: lower-case letters, digits and '-', starting with a letter."
    )
    namespace: DnsLabel = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class BertTrainingJob(BaseModel):
    """A whole BertTrainingJob document as written in YAML or read from the API."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # The API's constants (presets.API_GROUP, API_VERSION, KIND) as literals: mypy takes no expression in a Literal;
    # tests/operator/test_api_constants.py holds the two equal.
    api_version: Literal["bertoperator.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["BertTrainingJob"]
    metadata: ObjectMeta
    spec: BertTrainingJobSpec
    status: dict[str, Any] | None = Field(None, description="Written by the operator; ignored on input.")
