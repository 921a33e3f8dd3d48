"""Fine-tuning (GLUE, SQuAD) through the shared engine: epochs to steps, input, progress, checkpoints, stop.

The step itself (compiled forward/backward and update, accumulation, fp16 loss
scaling, bf16, XLA, Horovod) is :class:`bert_trainer.engine.TrainEngine`, the one
pretraining runs; this module is what fine-tuning adds around it.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from bert_trainer import stop, storage
from bert_trainer.checkpoints import CheckpointManager
from bert_trainer.engine import COMPUTE_DTYPES, EngineOptions, TaskLoss, TrainEngine
from bert_trainer.finetune.eval_batches import SEQUENCE_KEYS
from bert_trainer.reports import ReportWriter

__all__ = ["COMPUTE_DTYPES", "engine_options", "fine_tune", "finish", "trim_padding", "train_dataset"]



def engine_options(args: argparse.Namespace, steps: int) -> EngineOptions:
    """The engine's options from the fine-tuning flags, for a run of `steps` optimizer steps."""
    return EngineOptions(
        learning_rate=args.learning_rate, num_train_steps=steps, num_warmup_steps=int(steps * args.warmup_proportion),
        num_accumulation_steps=args.num_accumulation_steps, optimizer=args.optimizer,
        weight_decay_rate=args.weight_decay_rate, beta_1=args.beta_1, beta_2=args.beta_2, epsilon=args.epsilon,
        precision=args.precision, use_xla=args.use_xla, allreduce_post_accumulation=args.allreduce_post_accumulation,
        seed=args.seed, clip_norm=args.clip_norm, adam_bias_correction=args.adam_bias_correction)


def trim_padding(batch: dict[str, tf.Tensor], multiple: int) -> dict[str, tf.Tensor]:
    """The batch cut to its longest sequence, rounded up to `multiple` tokens (at most the padded length).

    Why: MRPC pairs average 53 WordPiece tokens, so at --max_seq_length 128 a batch of 32 is
    mostly padding, and the encoder's cost is linear in the length. The cut is exact for a
    head that reads only real tokens (the [CLS] classifier): padded keys get a -10000 attention
    bias, so they add exactly zero to the softmax, and every real token's output is the same.
    Rounding bounds the shapes a compiled step sees (XLA compiles one program per shape).
    """
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(batch["input_mask"], tf.int32), axis=1))
    padded = tf.shape(batch["input_mask"])[1]
    length = tf.minimum(tf.maximum((longest + multiple - 1) // multiple, 1) * multiple, padded)
    return {key: (value[:, :length] if key in SEQUENCE_KEYS else value) for key, value in batch.items()}


def train_dataset(train: dict[str, np.ndarray], batch_size: int, seed: int, world, *, skip_batches: int = 0,
                  trim_to: int | None = None) -> tf.data.Dataset:
    """This rank's endless, seeded, reshuffled-each-epoch micro-batches, the first `skip_batches` left out.

    Skipping replays the same shuffle, so a resumed run sees the batches it would have seen.
    `trim_to`: cut each batch to its longest sequence, in multiples of that many tokens (trim_padding).
    """
    count = len(next(iter(train.values())))
    dataset = (tf.data.Dataset.from_tensor_slices(train).shard(world.size, world.rank)
               .shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
               .batch(batch_size, drop_remainder=True).skip(skip_batches))
    if trim_to:
        dataset = dataset.map(lambda batch: trim_padding(batch, trim_to))
    return dataset.prefetch(2)


def fine_tune(model: tf.Module, train: dict[str, np.ndarray], task_loss: TaskLoss, args: argparse.Namespace, world,
              reports: ReportWriter, scratch: str, *, trim_to: int | None = None,
              after_first_epoch: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train `model` for num_train_epochs over `train` (arrays); returns {steps, trainExamples, finalLoss, checkpoint}.

    One optimizer step is --num_accumulation_steps micro-batches of --train_batch_size on every rank.
    Checkpoints the whole state (weights, optimizer slots, step, loss scale) every
    --save_checkpoints_steps, on SIGTERM (see stop.py) and at the end, under
    <output_dir>/checkpoints; a restarted run resumes from the newest one, replaying
    the seeded shuffle up to that step so it sees the batches it would have seen.
    progress.json every --report_every_steps steps and at the end. `after_first_epoch` is called on every rank
    after the first epoch's last step, when more steps follow (a sweep's early look at the dev set).
    """
    # Dropout draws from TensorFlow's global seed: seeded per rank, a run repeats itself (the same --seed, the
    # same data, the same metrics), as the shuffle and the heads' initialisation already did.
    tf.random.set_seed(args.seed + world.rank)
    count = len(next(iter(train.values())))
    k = max(int(args.num_accumulation_steps), 1)
    sequences_per_step = args.train_batch_size * k * world.size
    steps = max(1, math.ceil(count * args.num_train_epochs / sequences_per_step))
    engine = TrainEngine(model, task_loss, engine_options(args, steps), world)
    manager = CheckpointManager(engine.checkpoint(), args.output_dir, scratch, keep=args.keep_checkpoint_max)
    resumed = manager.restore_newest()  # every rank reads the same checkpoint, so they stay identical
    world.broadcast_variables(engine.state_variables())
    start = int(engine.step.numpy())
    dataset = train_dataset(train, args.train_batch_size, args.seed, world, skip_batches=start * k, trim_to=trim_to)
    engine.expect_batches(dataset.element_spec)  # one trace for every trimmed length, not two
    batches = iter(dataset)

    started = time.monotonic()
    loss: float | None = None
    saved: str | None = None
    first_epoch = math.ceil(count / sequences_per_step)
    for step in range(start + 1, steps + 1):
        loss = engine.train_step([next(batches) for _ in range(k)])["loss"]
        if after_first_epoch is not None and step == first_epoch < steps:
            after_first_epoch()
        if world.is_chief and (step % args.report_every_steps == 0 or step == steps):
            elapsed = time.monotonic() - started
            done = step - start
            reports.progress({"step": step, "totalSteps": steps, "loss": round(loss, 6),
                              "sequencesPerSecond": round(done * sequences_per_step / elapsed, 3),
                              "etaSeconds": round(elapsed / done * (steps - step), 1)}, final=step == steps)
        if world.is_chief and step % args.save_checkpoints_steps == 0 and step != steps:
            saved = manager.save(step)
        if step != steps:  # at the last step the run is done: nothing to stop
            stop.stop_if_asked(world, step, saved=saved, save_now=None if step % args.save_checkpoints_steps == 0
                               else lambda: manager.save(step))
    checkpoint = manager.save(steps) if world.is_chief and start < steps else storage.join(manager.remote_dir, f"ckpt-{steps}")
    return {"steps": steps, "trainExamples": count, "finalLoss": loss, "checkpoint": checkpoint,
            "resumedFromStep": resumed}


def finish(results: dict[str, Any], world, reports: ReportWriter) -> dict[str, Any]:
    """Rank 0 writes results.json and reports it; every rank waits so none exits before the chief is done."""
    results = reports.results(results)
    world.barrier()
    return results
