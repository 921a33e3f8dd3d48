"""The fine-tuning loop GLUE and SQuAD share: schedule, optimizer, loss scaling, XLA, allreduce, progress."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from bert_trainer import stop, storage
from bert_trainer.checkpoints import CheckpointManager
from bert_trainer.optim import DynamicLossScale, WarmupPolyDecay, all_finite, create_optimizer
from bert_trainer.reports import ReportWriter

COMPUTE_DTYPES = {"fp32": tf.float32, "fp16": tf.float16, "bf16": tf.bfloat16}


def fine_tune(model: tf.Module, train: dict[str, np.ndarray], loss_fn: Callable[[tf.Module, dict, tf.DType], tf.Tensor],
              args: argparse.Namespace, world, reports: ReportWriter, scratch: str) -> dict[str, Any]:
    """Train `model` for num_train_epochs over `train` (arrays); returns {steps, trainExamples, finalLoss, checkpoint}.

    Checkpoints the whole state (weights, optimizer slots, step, loss scale) every
    --save_checkpoints_steps, on SIGTERM (see stop.py) and at the end, under
    <output_dir>/checkpoints; a restarted run resumes from the newest one, replaying
    the seeded shuffle up to that step so it sees the batches it would have seen.
    """
    variables = list(model.named_variables().values())
    compute_dtype = COMPUTE_DTYPES[args.precision]
    count = len(next(iter(train.values())))
    steps = max(1, math.ceil(count * args.num_train_epochs / (args.train_batch_size * world.size)))
    optimizer = create_optimizer(args.optimizer, model.named_variables(),
                                 WarmupPolyDecay(args.learning_rate, steps, int(steps * args.warmup_proportion)),
                                 beta_1=args.beta_1, beta_2=args.beta_2, epsilon=args.epsilon,
                                 weight_decay_rate=args.weight_decay_rate)
    loss_scale = DynamicLossScale() if args.precision == "fp16" else None
    step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    state = {"model": model, "optimizer": optimizer, "step": step_counter, **({"loss_scale": loss_scale} if loss_scale else {})}
    manager = CheckpointManager(tf.train.Checkpoint(**state), args.output_dir, scratch,
                                keep=args.keep_checkpoint_max)
    resumed = manager.restore_newest()  # every rank reads the same checkpoint, so they stay identical
    start = int(step_counter.numpy())
    dataset = (tf.data.Dataset.from_tensor_slices(train).shard(world.size, world.rank)
               .shuffle(count, seed=args.seed, reshuffle_each_iteration=True).repeat()
               .batch(args.train_batch_size, drop_remainder=True).prefetch(2))

    @tf.function(jit_compile=args.use_xla)
    def gradients(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(model, batch, compute_dtype)
            scaled = loss * (loss_scale.scale if loss_scale is not None else 1.0)
        # Dense gradients: the embedding lookup yields IndexedSlices, which the optimizer and allreduce do not take;
        # weights a head does not use (SQuAD leaves the pooler out) get zeros, as in Google's run_squad.
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(tape.gradient(scaled, variables), variables)]
        if loss_scale is not None:
            grads = [g / loss_scale.scale for g in grads]
        return loss, grads

    started = time.monotonic()
    loss: tf.Tensor | None = None
    saved: str | None = None
    for step, batch in enumerate(dataset.skip(start).take(steps - start), start=start + 1):
        loss, grads = gradients(batch)
        grads = world.allreduce(grads)
        finite = all_finite(grads)
        if loss_scale is not None:
            loss_scale.update(finite)
        if bool(finite):
            optimizer.apply_gradients(grads, variables, tf.constant(step, tf.int64))
        step_counter.assign(step)
        if world.is_chief and (step % 20 == 0 or step == steps):
            elapsed = time.monotonic() - started
            done = step - start
            reports.progress({"step": step, "totalSteps": steps, "loss": round(float(loss), 6),
                              "sequencesPerSecond": round(done * args.train_batch_size * world.size / elapsed, 3),
                              "etaSeconds": round(elapsed / done * (steps - step), 1)}, final=step == steps)
        if world.is_chief and step % args.save_checkpoints_steps == 0 and step != steps:
            saved = manager.save(step)
        if step != steps:  # at the last step the run is done: nothing to stop
            stop.stop_if_asked(world, step, saved=saved, save_now=None if step % args.save_checkpoints_steps == 0
                               else lambda: manager.save(step))
    checkpoint = manager.save(steps) if world.is_chief and start < steps else storage.join(manager.remote_dir, f"ckpt-{steps}")
    return {"steps": steps, "trainExamples": count, "finalLoss": float(loss) if loss is not None else None,
            "checkpoint": checkpoint, "resumedFromStep": resumed}


def finish(results: dict[str, Any], world, reports: ReportWriter) -> dict[str, Any]:
    """Rank 0 writes results.json and reports it; every rank waits so none exits before the chief is done."""
    results = reports.results(results)
    world.barrier()
    return results
