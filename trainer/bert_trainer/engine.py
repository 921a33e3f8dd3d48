"""The one training step every task runs: model, task loss, optimizer, loss scaling, accumulation.

Pretraining (MLM + NSP, LAMB), GLUE (classification) and SQuAD (start/end spans),
AdamW, share this engine, as NVIDIA's TF2 BERT shares one training loop: a task
brings its model (a tf.Module with ``named_variables()``) and a :data:`TaskLoss`;
the engine owns the rest.

One optimizer step = ``num_accumulation_steps`` micro-batches. Gradients are summed
in fp32 accumulators and averaged across micro-batches; with
``allreduce_post_accumulation`` (or without accumulation) Horovod allreduces once
per optimizer step, otherwise once per micro-batch (NVIDIA's two modes). A step
whose gradients are not all finite is skipped (weights and slots untouched; in fp16
the loss scale halves), whatever the precision.

Compilation (``jit_compile=use_xla``): the micro-batch forward/backward is one XLA
cluster; Horovod's allreduce runs outside XLA (our Horovod build has no XLA
kernels); on one process without accumulation ``fuse_update_into_xla`` (the default)
puts the whole step, update included, in one cluster; otherwise the update runs as
a plain tf.function. Without XLA, one process and no accumulation, the whole step is a single
tf.function call. Never eager: the update loops over the variables only while tracing.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Mapping, Sequence

import tensorflow as tf

from bert_trainer.dist import SingleProcess
from bert_trainer.optim import DynamicLossScale, WarmupPolyDecay, all_finite, create_optimizer

log = logging.getLogger(__name__)

COMPUTE_DTYPES = {"fp32": tf.float32, "fp16": tf.float16, "bf16": tf.bfloat16}
METRIC_KEYS = ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy")

#: (model, features, training, compute_dtype) -> scalar fp32 metrics, "loss" (what is minimised) among them.
TaskLoss = Callable[[tf.Module, Mapping[str, tf.Tensor], bool, tf.DType], Mapping[str, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    learning_rate: float = 1e-4
    num_train_steps: int = 1000
    num_warmup_steps: int = 100
    num_accumulation_steps: int = 1
    optimizer: str = "lamb"
    weight_decay_rate: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    precision: str = "fp32"
    use_xla: bool = False
    allreduce_post_accumulation: bool = True
    seed: int = 12345
    initial_loss_scale: float = 2.0 ** 15
    loss_scale_growth_interval: int = 2000
    # Put the optimizer update in the same XLA cluster as forward/backward (one process, no
    # accumulation only), as keras-hub's jit_compile does. On by default: once the weight
    # matmuls were 2-D (model/layers.py), the fused step measured 1.1x-2.2x the step whose update
    # runs as ~18 TensorFlow elementwise passes over the weights (bench/trainer_throughput.py).
    fuse_update_into_xla: bool = True
    # Clip the step's gradient (accumulated over the micro-batches, averaged over the ranks, unscaled) to this global
    # norm before the update; 0 turns it off. 1.0 as in Google's optimization.create_optimizer ("This is how the
    # model was pre-trained"), which NVIDIA's recipe and transformers' Trainer keep.
    clip_norm: float = 1.0
    # AdamW only: Adam's bias correction (m/(1-b1^t), v/(1-b2^t)). Off, as Google's AdamWeightDecayOptimizer, whose
    # update BERT was pre-trained and fine-tuned with; on gives torch.optim.AdamW's update. NVLAMB always corrects.
    adam_bias_correction: bool = False


class TrainEngine(tf.Module):
    """Everything that is checkpointed (model, optimizer, step, loss scale) plus the
    compiled step functions, for any model and task loss."""

    def __init__(self, model: tf.Module, task_loss: TaskLoss, opts: EngineOptions,
                 world: SingleProcess | None = None) -> None:
        super().__init__()
        if opts.precision not in COMPUTE_DTYPES:
            raise ValueError(f"precision must be one of {sorted(COMPUTE_DTYPES)}")
        self.opts = opts
        self.world = world or SingleProcess()
        self.compute_dtype = COMPUTE_DTYPES[opts.precision]
        self.model = model
        self.task_loss = task_loss
        named = self.model.named_variables()
        self.names = list(named)
        self.variables_ = list(named.values())
        schedule = WarmupPolyDecay(opts.learning_rate, opts.num_train_steps, opts.num_warmup_steps)
        self.optimizer = create_optimizer(opts.optimizer, named, schedule, beta_1=opts.beta_1, beta_2=opts.beta_2,
                                          epsilon=opts.epsilon, weight_decay_rate=opts.weight_decay_rate,
                                          adam_bias_correction=opts.adam_bias_correction)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # fp16 only: bf16 has fp32's exponent range, so it needs no loss scaling.
        self.loss_scale = (DynamicLossScale(opts.initial_loss_scale, opts.loss_scale_growth_interval)
                           if opts.precision == "fp16" else None)
        self.k = max(int(opts.num_accumulation_steps), 1)
        self.accum = ([tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]
                      if self.k > 1 else None)
        self.reduce_per_micro_batch = (self.k > 1 and not opts.allreduce_post_accumulation and self.world.size > 1)
        # autograph=False: the step's Python is already graph code (its `if`s and loops are over Python values, the
        # skip is an explicit tf.cond), and AutoGraph's source conversion of every model, loss and optimizer function
        # was a third of tracing a fine-tuning step (~1 s of the ~3 s for MiniLM, per trace).
        self._grad_fn = tf.function(self._grads, jit_compile=opts.use_xla, reduce_retracing=True, autograph=False)
        self._eval_fn = tf.function(self._eval, jit_compile=opts.use_xla, reduce_retracing=True, autograph=False)
        self._accumulate_fn = tf.function(self._accumulate, reduce_retracing=True, autograph=False)
        self._reduce_fn = tf.function(self._reduce, reduce_retracing=True, autograph=False)
        self._update_fn = tf.function(self._update, jit_compile=opts.use_xla and opts.fuse_update_into_xla,
                                      reduce_retracing=True, autograph=False)
        self.fused = self.world.size == 1 and self.k == 1 and (opts.fuse_update_into_xla or not opts.use_xla)
        self._fused_fn = tf.function(self._fused, jit_compile=opts.use_xla, reduce_retracing=True, autograph=False)

    def expect_batches(self, spec: Mapping[str, tf.TensorSpec]) -> None:
        """Trace the micro-batch step once for every batch `spec` admits (``None`` where a dimension varies, e.g.
        a sequence length cut to each batch's longest example; a tf.data pipeline's ``element_spec``).

        Why: left to itself, tf.function traces the step for the first batch's shape and again, generalised, for
        the second batch's. Each trace of a MiniLM fine-tuning step (Python tracing and graph optimisation) costs
        ~4-5 s on 2 cores, as much as four training steps: a fifth of a short run's time. Call before the first step.
        """
        signature = [dict(spec)]
        self._grad_fn = tf.function(self._grads, jit_compile=self.opts.use_xla, input_signature=signature,
                                    autograph=False)
        self._fused_fn = tf.function(self._fused, jit_compile=self.opts.use_xla, input_signature=signature,
                                     autograph=False)

    # ----- checkpointed state -------------------------------------------------
    def checkpoint(self) -> tf.train.Checkpoint:
        """The object graph that resumes a run exactly (accumulators are zero between steps)."""
        items = {"model": self.model, "optimizer": self.optimizer, "step": self.step}
        if self.loss_scale is not None:
            items["loss_scale"] = self.loss_scale
        return tf.train.Checkpoint(**items)

    def state_variables(self) -> list[tf.Variable]:
        """Everything rank 0 broadcasts at start so all ranks begin identical."""
        out = list(self.variables_) + [self.step, self.optimizer.iterations] + self.optimizer.m + self.optimizer.v
        if self.loss_scale is not None:
            out += [self.loss_scale.scale, self.loss_scale.good_steps]
        return out

    # ----- compiled pieces ----------------------------------------------------
    def _current_scale(self) -> tf.Tensor:
        return self.loss_scale.scale if self.loss_scale is not None else tf.constant(1.0)

    def _grads(self, features: Mapping[str, tf.Tensor]):
        with tf.GradientTape() as tape:
            metrics = dict(self.task_loss(self.model, features, True, self.compute_dtype))
            scaled = metrics["loss"] * self._current_scale()
        # Dense gradients: embedding gathers give IndexedSlices, which accumulation and allreduce
        # do not take; weights a head does not use (SQuAD leaves the pooler out) get zeros, as in
        # Google's run_squad.
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(tape.gradient(scaled, self.variables_), self.variables_)]
        return grads, metrics

    def _accumulate(self, grads: Sequence[tf.Tensor]) -> None:
        if self.reduce_per_micro_batch:
            grads = self.world.allreduce(grads)
        assert self.accum is not None  # accumulating: k > 1
        for acc, g in zip(self.accum, grads):
            acc.assign_add(g)

    def _reduce(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The once-per-optimizer-step allreduce (Horovod; identity on one process)."""
        return self.world.allreduce(grads)

    def _update(self, grads: Sequence[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """Average over micro-batches, unscale, clip to the global norm, skip on overflow, update; returns the finite
        flag and the gradient's global norm before clipping."""
        grads = [g / float(self.k) for g in grads] if self.k > 1 else list(grads)
        if self.loss_scale is not None:
            grads = [g / self._current_scale() for g in grads]
        finite = all_finite(grads)
        norm = tf.linalg.global_norm(grads)
        if self.opts.clip_norm > 0:  # (a non-finite norm makes NaNs here: that step is skipped below)
            grads, _ = tf.clip_by_global_norm(grads, self.opts.clip_norm, use_norm=norm)
        if self.loss_scale is not None:
            # Overflow: skip the update (NaNs must never reach weights or slots).
            safe = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
            tf.cond(finite, lambda: self._optimizer_update(safe), lambda: tf.constant(False))
            self.loss_scale.update(finite)
        else:
            tf.cond(finite, lambda: self._optimizer_update(grads), lambda: tf.constant(False))
        if self.accum is not None:
            for acc in self.accum:
                acc.assign(tf.zeros_like(acc))
        self.step.assign_add(1)
        return finite, norm

    def _fused(self, features: Mapping[str, tf.Tensor]):
        grads, metrics = self._grads(features)
        return self._update(grads), metrics

    def _apply(self, grads: Sequence[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        if self.world.size > 1 and not self.reduce_per_micro_batch:
            grads = self._reduce_fn(list(grads))
        return self._update_fn(list(grads))

    def _optimizer_update(self, grads):
        self.optimizer.apply_gradients(grads, self.variables_, self.step)
        return tf.constant(True)

    def _eval(self, features: Mapping[str, tf.Tensor]):
        return dict(self.task_loss(self.model, features, False, self.compute_dtype))

    # ----- public API ---------------------------------------------------------
    def train_step(self, micro_batches: Sequence[Mapping[str, tf.Tensor]]) -> dict[str, float]:
        """One optimizer step over ``k`` micro-batches; returns this rank's mean metrics."""
        if len(micro_batches) != self.k:
            raise ValueError(f"expected {self.k} micro-batches, got {len(micro_batches)}")
        if self.fused:
            (finite, norm), metrics = self._fused_fn(micro_batches[0])
            totals = {key: float(value) for key, value in metrics.items()}
        elif self.k == 1:
            grads, metrics = self._grad_fn(micro_batches[0])
            finite, norm = self._apply(grads)
            totals = {key: float(value) for key, value in metrics.items()}
        else:
            sums: dict[str, tf.Tensor] = {}
            for batch in micro_batches:
                grads, metrics = self._grad_fn(batch)
                self._accumulate_fn(grads)
                sums = {key: sums.get(key, 0.0) + value for key, value in metrics.items()}
            assert self.accum is not None  # k > 1
            finite, norm = self._apply(list(self.accum))
            totals = {key: float(value) / self.k for key, value in sums.items()}
        totals["grads_finite"] = float(bool(finite))
        totals["grad_norm"] = float(norm)  # before clipping (what the clip saw)
        if self.loss_scale is not None:
            totals["loss_scale"] = float(self.loss_scale.scale.numpy())
        return totals

    def evaluate(self, batches, max_steps: int) -> dict[str, float]:
        """Mean metrics over up to ``max_steps`` eval batches (rank-local)."""
        totals: dict[str, float] = {}
        n = 0
        for batch in batches:
            if n >= max_steps:
                break
            for key, value in self._eval_fn(batch).items():
                totals[key] = totals.get(key, 0.0) + float(value)
            n += 1
        keys = totals or dict.fromkeys(self._metric_keys(), 0.0)
        return {key: (totals.get(key, 0.0) / n if n else float("nan")) for key in keys} | {"batches": n}

    def _metric_keys(self) -> tuple[str, ...]:
        """The metric names an empty evaluation still reports (NaN)."""
        return ("loss",)


def pretraining_task_loss(model: tf.Module, features: Mapping[str, tf.Tensor], training: bool,
                          compute_dtype: tf.DType) -> dict[str, tf.Tensor]:
    """MLM + NSP loss and accuracies (Google's pretraining loss) of a BertPretrainer."""
    from bert_trainer.model import pretraining_loss  # noqa: PLC0415 - model.bert loads lazily

    return pretraining_loss(model(features, training=training, compute_dtype=compute_dtype), features)


class PretrainEngine(TrainEngine):
    """The pretraining engine: a BertPretrainer built from ``cfg`` and the MLM + NSP loss."""

    def __init__(self, cfg, opts: EngineOptions, world: SingleProcess | None = None) -> None:
        from bert_trainer.model import BertPretrainer  # noqa: PLC0415

        super().__init__(BertPretrainer(cfg, seed=opts.seed), pretraining_task_loss, opts, world)
        self.cfg = cfg

    def _metric_keys(self) -> tuple[str, ...]:
        return METRIC_KEYS
