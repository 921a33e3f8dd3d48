"""``pretrain``: the thin driver that wires data, engine, checkpoints and reports.

Order of start-up matters: resume from output_dir (full state) wins over
--init_checkpoint (weights only), and rank 0's state is broadcast last so every
rank starts identical whichever path was taken. At the end rank 0 writes the
--export_formats exports (<output_dir>/export/<format>/, no tokenizer files: the
task takes no vocab) before results.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import tensorflow as tf

from bert_trainer import output_lock, stop, storage
from bert_trainer.checkpoints import CheckpointManager
from bert_trainer.data.pipeline import list_record_files, pretraining_dataset
from bert_trainer.data.record_check import named_record_errors
from bert_trainer.dist import SingleProcess, create_world
from bert_trainer.engine import EngineOptions, PretrainEngine
from bert_trainer.model import BertConfig
from bert_trainer.model.export import export_stage
from bert_trainer.model.importer import load_init_checkpoint
from bert_trainer.scratch import run_scratch_dir
from bert_trainer.tasks.pretrain.reporter import create_reporter

log = logging.getLogger(__name__)


def stage_inputs(uri: str, scratch: str, name: str, rank: int = 0, size: int = 1, *,
                 flag: str | None = None) -> tuple[list[str], bool]:
    """Local record files for a local dir or an s3:// prefix, and whether they are
    already this rank's shard. From s3 each rank downloads only its own files (the
    same files[rank::size] split the pipeline would make), size-checked so a
    restarted pod does not download again. A key that would land outside the staging
    folder is refused (storage.UnsafeKey naming `flag`) before anything is downloaded."""
    if not storage.is_s3(uri):
        return list_record_files(uri), False
    entries = [e for e in storage.list_files(uri) if "/" not in e.relpath]
    shard = size > 1 and len(entries) >= size
    mine = entries[rank::size] if shard else entries
    targets = storage.local_paths(os.path.join(scratch, "inputs", name), mine, flag=flag)
    for entry, target in zip(mine, targets):
        if not (os.path.isfile(target) and os.path.getsize(target) == entry.size):
            storage.download_file(entry.uri, target)
    log.info("event=inputs_staged name=%s files=%d of=%d rank=%d", name, len(mine), len(entries), rank)
    return targets, shard


def save_for_stop(manager: CheckpointManager, reporter, step: int, last: str | None, just_saved: bool) -> str | None:
    """The chief's part of a stop: checkpoint the step reached (unless that just happened) and publish progress."""
    if not just_saved:
        last = manager.save(step)
        reporter.upload_tensorboard()
    reporter.flush(step)
    return last


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        learning_rate=args.learning_rate, num_train_steps=args.num_train_steps,
        num_warmup_steps=args.num_warmup_steps, num_accumulation_steps=args.num_accumulation_steps,
        optimizer=args.optimizer, weight_decay_rate=args.weight_decay_rate, beta_1=args.beta_1,
        beta_2=args.beta_2, epsilon=args.epsilon, precision=args.precision, use_xla=args.use_xla,
        allreduce_post_accumulation=args.allreduce_post_accumulation, seed=args.seed,
        clip_norm=args.clip_norm, adam_bias_correction=args.adam_bias_correction)


def run(args: argparse.Namespace, cfg: BertConfig) -> dict:
    """Train and/or evaluate as the flags say, holding --output_dir (output_lock); returns the results dict (rank 0's)."""
    world = create_world(args.horovod)
    with output_lock.hold(args.output_dir, task="pretrain", chief=world.is_chief, world=world):
        return _run(args, cfg, world)


def _run(args: argparse.Namespace, cfg: BertConfig, world: SingleProcess) -> dict:
    tf.random.set_seed(args.seed + world.rank)  # dropout differs per rank, init does not (seeded generator)
    scratch = run_scratch_dir(args.local_dir, args.output_dir, world.rank)  # checkpoint staging, staged input
    engine = PretrainEngine(cfg, engine_options(args), world)
    manager = CheckpointManager(engine.checkpoint(), args.output_dir, scratch, keep=args.keep_checkpoint_max)

    resumed = manager.restore_newest()
    if resumed is None and args.init_checkpoint:
        report = load_init_checkpoint(engine.model, args.init_checkpoint, scratch)
        log.info("event=init_checkpoint_summary loaded=%d missing=%s unused=%s",
                 len(report.loaded), report.missing, report.unused)
    world.broadcast_variables(engine.state_variables())
    start = int(engine.step.numpy())

    reporter = create_reporter(world.is_chief, args.output_dir, args.num_train_steps, scratch,
                               args.report_every_steps, start)
    if world.is_chief:
        storage.write_bytes(storage.join(args.output_dir, "bert_config.json"), cfg.to_json().encode())
    results: dict = {"steps": start, "resumedFromStep": resumed}
    last_ckpt = None
    metrics: dict = {}
    do_train = args.do_train or not args.do_eval

    if do_train and start < args.num_train_steps:
        files, sharded = stage_inputs(args.input_files_dir, scratch, "train", world.rank, world.size,
                                      flag="input_files_dir")
        ds = pretraining_dataset(files, args.train_batch_size, args.max_seq_length, args.max_predictions_per_seq,
                                 is_training=True, rank=0 if sharded else world.rank,
                                 num_ranks=1 if sharded else world.size, seed=args.seed + start)
        batches = iter(ds)
        seqs_per_step = args.train_batch_size * engine.k * world.size
        log.info("event=train_start rank=%d world=%d start_step=%d total_steps=%d global_batch=%d precision=%s xla=%s",
                 world.rank, world.size, start, args.num_train_steps, seqs_per_step, args.precision, args.use_xla)
        window_t, window_steps = time.perf_counter(), 0
        for step in range(start + 1, args.num_train_steps + 1):
            t0 = time.perf_counter()
            with named_record_errors(files):  # a file cut short: RecordError naming it, exit 2
                micro_batches = [next(batches) for _ in range(engine.k)]
            metrics = engine.train_step(micro_batches)
            dt = time.perf_counter() - t0
            window_steps += 1
            elapsed = time.perf_counter() - window_t
            # Throughput over a window since the last report (the first step includes tracing).
            metrics["steps_per_second"] = window_steps / elapsed if elapsed > 0 else 0.0
            reporter.record(step, metrics, seqs_per_step * metrics["steps_per_second"])
            if step % args.report_every_steps == 0:
                window_t, window_steps = time.perf_counter(), 0
            if step % args.save_checkpoints_steps == 0 or step == args.num_train_steps:
                if world.is_chief:
                    last_ckpt = manager.save(step)
                    reporter.upload_tensorboard()
                world.barrier()
            log.debug("event=step step=%d loss=%.4f seconds=%.3f", step, metrics["loss"], dt)
            just_saved = step % args.save_checkpoints_steps == 0 or step == args.num_train_steps
            stop.stop_if_asked(world, step, saved=last_ckpt,
                               save_now=lambda: save_for_stop(manager, reporter, step, last_ckpt, just_saved))
        results["steps"] = args.num_train_steps
    if last_ckpt is None:
        from bert_trainer.checkpoints import newest_checkpoint  # noqa: PLC0415

        found = newest_checkpoint(manager.remote_dir)
        last_ckpt = found[1] if found else None

    results.update({
        "finalLoss": metrics.get("loss"),
        "mlmAccuracy": metrics.get("mlm_accuracy"),
        "nspAccuracy": metrics.get("nsp_accuracy"),
        "checkpoint": last_ckpt,
        "globalBatchSize": args.train_batch_size * engine.k * world.size,
        "precision": args.precision,
        "useXla": bool(args.use_xla),
        "worldSize": world.size,
    })
    if args.do_eval:
        eval_files, sharded = stage_inputs(args.eval_files_dir, scratch, "eval", world.rank, world.size,
                                              flag="eval_files_dir")
        eval_ds = pretraining_dataset(eval_files, args.eval_batch_size, args.max_seq_length,
                                      args.max_predictions_per_seq, is_training=False,
                                      rank=0 if sharded else world.rank, num_ranks=1 if sharded else world.size)
        with named_record_errors(eval_files):
            ev = engine.evaluate(eval_ds, args.max_eval_steps)
        results.update({"evalLoss": world.allreduce_scalar(ev["loss"]),
                        "evalMlmAccuracy": world.allreduce_scalar(ev["mlm_accuracy"]),
                        "evalNspAccuracy": world.allreduce_scalar(ev["nsp_accuracy"])})
        log.info("event=eval loss=%.4f mlm_accuracy=%.4f nsp_accuracy=%.4f batches=%d",
                 results["evalLoss"], results["evalMlmAccuracy"], results["evalNspAccuracy"], ev["batches"])
    results["exported"] = export_stage(engine.model, cfg, args.output_dir, args.export_formats) if world.is_chief else []
    return reporter.finish(results)
