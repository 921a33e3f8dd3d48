"""Worker for the Horovod test: trains the tiny model on a fixed sequence of global
batches (each rank takes its slice) and saves its final weights as rank<N>.npz.

Run under ``horovodrun --gloo -np 2`` with --horovod, or alone without it for the
1-process reference on the same global batches.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from bert_trainer.data.synthetic import make_batch
from bert_trainer.dist import create_world
from bert_trainer.engine import EngineOptions, PretrainEngine
from bert_trainer.model import BertConfig
from conftest import PRED, SEQ, TINY


def train(world, *, steps: int, k: int, global_batch: int, per_micro_batch_allreduce: bool) -> dict:
    """Final weights {name: array} after ``steps`` optimizer steps on this rank's slices."""
    # Different seeds per rank prove the initial broadcast, not luck, makes ranks agree.
    opts = EngineOptions(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=0, num_accumulation_steps=k,
                         allreduce_post_accumulation=not per_micro_batch_allreduce, seed=100 + world.rank)
    engine = PretrainEngine(BertConfig.from_dict(TINY), opts, world)
    world.broadcast_variables(engine.state_variables())
    per_rank = global_batch // world.size
    micro = per_rank // k
    for step in range(steps):
        big = make_batch(500 + step, global_batch, TINY["vocab_size"], SEQ, PRED, fixed_length=True)
        mine = {key: v[world.rank * per_rank:(world.rank + 1) * per_rank] for key, v in big.items()}
        engine.train_step([{key: v[i * micro:(i + 1) * micro] for key, v in mine.items()} for i in range(k)])
    return {name.replace("/", "|"): v.numpy() for name, v in engine.model.named_variables().items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--horovod", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--global_batch", type=int, default=16)
    ap.add_argument("--per_micro_batch_allreduce", action="store_true")
    args = ap.parse_args()
    world = create_world(args.horovod)
    weights = train(world, steps=args.steps, k=args.k, global_batch=args.global_batch,
                    per_micro_batch_allreduce=args.per_micro_batch_allreduce)
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, f"rank{world.rank}.npz"), **weights)


if __name__ == "__main__":
    main()
