"""The fine-tuning loop GLUE and SQuAD share: schedule, optimizer, loss scaling, XLA, allreduce, progress."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from bert_trainer import storage
from bert_trainer.optim import DynamicLossScale, WarmupPolyDecay, all_finite, create_optimizer
from bert_trainer.progress_push import ProgressPusher
from bert_trainer.report import rfc3339_now

log = logging.getLogger(__name__)
COMPUTE_DTYPES = {"fp32": tf.float32, "fp16": tf.float16, "bf16": tf.bfloat16}


def write_json(uri: str, payload: Any) -> None:
    storage.write_bytes(uri, json.dumps(payload, indent=2, ensure_ascii=False).encode())


def fine_tune(model: tf.Module, train: dict[str, np.ndarray], loss_fn: Callable[[tf.Module, dict, tf.DType], tf.Tensor],
              args: argparse.Namespace, world, pusher: ProgressPusher | None) -> dict[str, Any]:
    """Train `model` for num_train_epochs over `train` (arrays); returns {steps, trainExamples, finalLoss}."""
    variables = list(model.named_variables().values())
    compute_dtype = COMPUTE_DTYPES[args.precision]
    count = len(next(iter(train.values())))
    steps = max(1, math.ceil(count * args.num_train_epochs / (args.train_batch_size * world.size)))
    optimizer = create_optimizer(args.optimizer, model.named_variables(),
                                 WarmupPolyDecay(args.learning_rate, steps, int(steps * args.warmup_proportion)),
                                 beta_1=args.beta_1, beta_2=args.beta_2, epsilon=args.epsilon,
                                 weight_decay_rate=args.weight_decay_rate)
    loss_scale = DynamicLossScale() if args.precision == "fp16" else None
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
    loss = tf.constant(0.0)
    for step, batch in enumerate(dataset.take(steps), start=1):
        loss, grads = gradients(batch)
        grads = world.allreduce(grads)
        finite = all_finite(grads)
        if loss_scale is not None:
            loss_scale.update(finite)
        if bool(finite):
            optimizer.apply_gradients(grads, variables, tf.constant(step, tf.int64))
        if world.is_chief and (step % 20 == 0 or step == steps):
            elapsed = time.monotonic() - started
            progress = {"step": step, "totalSteps": steps, "loss": round(float(loss), 6),
                        "sequencesPerSecond": round(step * args.train_batch_size * world.size / elapsed, 3),
                        "etaSeconds": round(elapsed / step * (steps - step), 1), "updatedAt": rfc3339_now()}
            write_json(storage.join(args.output_dir, "progress.json"), progress)
            log.info("event=progress %s", " ".join(f"{k}={v}" for k, v in progress.items()))
            if pusher:
                pusher.progress(progress, final=step == steps)
    return {"steps": steps, "trainExamples": count, "finalLoss": float(loss)}


def finish(results: dict[str, Any], args: argparse.Namespace, world, pusher: ProgressPusher | None) -> dict[str, Any]:
    """Rank 0 writes results.json and reports it; every rank waits so none exits before the chief is done."""
    if world.is_chief:
        results["updatedAt"] = rfc3339_now()
        write_json(storage.join(args.output_dir, "results.json"), results)
        if pusher:
            pusher.results(results)
    world.barrier()
    return results
