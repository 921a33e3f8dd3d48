"""The reference side of bench/finetune_accuracy.py: the same GLUE and SQuAD fine-tuning through Hugging Face transformers.

PyTorch 2.13.0 (CPU) and transformers, the ``bench`` extra (``pip install torch==2.13.0 transformers``: never a
product dependency), train ``BertForSequenceClassification`` from the same all-MiniLM-L6-v2 weights on the same
train.tsv with the same hyperparameters as this project's trainer gets (batch, learning rate, epochs, sequence
length, 10% linear warmup then linear decay, AdamW with weight decay 0.01 off LayerNorm and biases, epsilon 1e-6,
gradients clipped to global norm 1.0), the way transformers' run_glue.py trains: dropout on, batches padded to their
longest pair (its DataCollatorWithPadding), evaluation on the full dev set. The classifier head starts from each
side's own random draw, which is why the accuracy bench compares means over seeds.

SQuAD v1.1 (``fine_tune_squad``) trains ``BertForQuestionAnswering`` on the features this project's trainer makes
from the accuracy bench's train articles (its own ``make_features``: both sides see the same token ids, windows
and answer positions, padded to the sequence length as both train), and scores the held-out articles through the
trainer's own span search and official v1.1 EM/F1, so only the training differs.

It answers what the accuracy bench prints beside our figures: the dev metrics, and the training speed as training
sequences per second (train examples x epochs / seconds spent in the training loop, loading and scoring excluded)
and per CPU-second of this process.

    PYTHONPATH=common:operator:trainer .venv/bin/python bench/finetune_reference.py --task mrpc --epochs 1 \
        [--batch 32 --lr 2e-5 --seq 128 --seed 1 --data DIR]

(SQuAD runs from the accuracy bench, which makes the article split.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

#: The GLUE tasks the reference trains, by the bench's name: the trainer's --task_name (its reader's layout).
GLUE_NAMES = {"mrpc": "MRPC", "cola": "CoLA"}


def read_split(data: Path, task: str, split: str) -> tuple[list[tuple[str, ...]], list[int]]:
    """The texts and labels of one split, read by the trainer's own GLUE reader (same rows, same columns)."""
    from bert_trainer.finetune.glue_data import read_examples  # noqa: PLC0415 - PYTHONPATH holds trainer/

    examples = read_examples(GLUE_NAMES[task], str(data), split)
    return [(e.text_a,) if e.text_b is None else (e.text_a, e.text_b) for e in examples], [e.label for e in examples]


def scores(task: str, predicted: list[int], gold: list[int]) -> dict[str, float]:
    """The task's dev metrics as this project's trainer reports them (fractions): MRPC accuracy and F1, CoLA MCC."""
    tp = sum(1 for p, g in zip(predicted, gold) if p == 1 and g == 1)
    tn = sum(1 for p, g in zip(predicted, gold) if p == 0 and g == 0)
    fp = sum(1 for p, g in zip(predicted, gold) if p == 1 and g == 0)
    fn = sum(1 for p, g in zip(predicted, gold) if p == 0 and g == 1)
    accuracy = (tp + tn) / max(len(gold), 1)
    if task == "mrpc":
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        return {"accuracy": accuracy, "f1": f1}
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"mcc": (tp * tn - fp * fn) / denominator if denominator else 0.0, "accuracy": accuracy}


def _train(model: Any, count: int, inputs: Callable[[list[int]], dict[str, Any]], *, batch: int, lr: float,
           epochs: float, seed: int) -> dict[str, Any]:
    """The training loop both tasks share, as transformers' Trainer runs it: seeded reshuffle each epoch, AdamW with
    weight decay 0.01 off LayerNorm and biases (eps 1e-6), 10% linear warmup then linear decay, clip to global norm
    1.0; `inputs(indices)` makes one batch's model inputs (labels included). Times the loop alone."""
    import torch  # noqa: PLC0415 - the bench extra
    from transformers import get_linear_schedule_with_warmup  # noqa: PLC0415

    steps_per_epoch = math.ceil(count / batch)
    total = max(1, int(steps_per_epoch * epochs))
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, eps=1e-6)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
    order = torch.Generator().manual_seed(seed)
    model.train()
    step, seen = 0, 0
    loss = torch.tensor(float("nan"))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while step < total:
        for start in range(0, count, batch):
            if step >= total:
                break
            if start == 0:
                permutation = torch.randperm(count, generator=order).tolist()
            picked = permutation[start:start + batch]
            loss = model(**inputs(picked)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            seen += len(picked)
    train_seconds, train_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"steps": step, "train_seconds": round(train_seconds, 1),
            "sequences_per_second": round(seen / train_seconds, 2),
            "sequences_per_cpu_second": round(seen / train_cpu, 2) if train_cpu else None,
            "final_loss": float(loss.detach())}


def fine_tune(task: str, data: Path, model_dir: Path, *, batch: int, lr: float, epochs: float, seq: int, seed: int,
              threads: int | None = None) -> dict[str, Any]:
    """Train and score one run through transformers on the GLUE folder `data` (the one our run trained on: the
    accuracy bench's capped copy, if any); the figures the accuracy bench prints for the reference."""
    import torch  # noqa: PLC0415 - the bench extra: imported only when the reference runs
    from transformers import BertForSequenceClassification, BertTokenizerFast  # noqa: PLC0415

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast(str(model_dir / "vocab.txt"), do_lower_case=True)
    model = BertForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
    train_texts, train_labels = read_split(data, task, "train")
    dev_texts, dev_labels = read_split(data, task, "dev")

    def encode(texts: list[tuple[str, ...]]) -> dict[str, Any]:
        columns = list(zip(*texts))
        return tokenizer(*columns, truncation=True, max_length=seq, padding="longest", return_tensors="pt")

    def inputs(picked: list[int]) -> dict[str, Any]:
        return {**encode([train_texts[i] for i in picked]), "labels": torch.tensor([train_labels[i] for i in picked])}

    trained = _train(model, len(train_texts), inputs, batch=batch, lr=lr, epochs=epochs, seed=seed)
    model.eval()
    predicted: list[int] = []
    with torch.no_grad():
        for start in range(0, len(dev_texts), 128):
            predicted += model(**encode(dev_texts[start:start + 128])).logits.argmax(-1).tolist()
    return {"side": "transformers", "task": task, "seed": seed, "train_examples": len(train_texts),
            "scores": {key: round(value * 100, 2) for key, value in scores(task, predicted, dev_labels).items()},
            **trained}


def fine_tune_squad(train_file: Path, predict_file: Path, model_dir: Path, *, batch: int, lr: float, epochs: float,
                    seq: int, doc_stride: int, max_query_length: int, seed: int, predict_batch: int = 64,
                    threads: int | None = None) -> dict[str, Any]:
    """Train ``BertForQuestionAnswering`` on SQuAD v1.1 `train_file` and score it on `predict_file`, on the very
    features this project's trainer makes (``finetune.squad_data.make_features``: the same token ids, windows and
    answer positions, padded to `seq` as both sides train), its n-best span search mapped back to the context's
    characters (``postprocess``, n-best 20, answers of at most 30 tokens: the squad task's defaults) and its official
    v1.1 EM/F1 (``score``). transformers' loss is the trainer's: the mean of the start and end cross-entropies over
    every position."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415 - the bench extra
    from transformers import BertForQuestionAnswering  # noqa: PLC0415

    from bert_trainer.finetune.squad_data import (feature_arrays, make_features, postprocess, read_squad,  # noqa: PLC0415
                                                  score)
    from bert_trainer.finetune.tokenization import load_tokenizer  # noqa: PLC0415

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    window = {"max_seq_length": seq, "doc_stride": doc_stride, "max_query_length": max_query_length}
    with tempfile.TemporaryDirectory(prefix="squad-reference-") as scratch:
        tokenizer = load_tokenizer(str(model_dir / "vocab.txt"), True, scratch)
        train = feature_arrays(make_features(read_squad(str(train_file), False), tokenizer, training=True, **window))
        examples = read_squad(str(predict_file), False)
        features = make_features(examples, tokenizer, training=False, **window)
    model = BertForQuestionAnswering.from_pretrained(str(model_dir))
    names = {"input_ids": "input_ids", "input_mask": "attention_mask", "segment_ids": "token_type_ids",
             "start_positions": "start_positions", "end_positions": "end_positions"}
    tensors = {names[key]: torch.from_numpy(value.astype(np.int64)) for key, value in train.items()}

    def inputs(picked: list[int]) -> dict[str, Any]:
        index = torch.tensor(picked)
        return {key: value[index] for key, value in tensors.items()}

    count = len(train["input_ids"])
    trained = _train(model, count, inputs, batch=batch, lr=lr, epochs=epochs, seed=seed)
    model.eval()
    arrays = {names[key]: torch.from_numpy(value.astype(np.int64)) for key, value in feature_arrays(features).items()
              if key in ("input_ids", "input_mask", "segment_ids")}
    starts, ends = [], []
    with torch.no_grad():
        for begin in range(0, len(features), predict_batch):
            out = model(**{key: value[begin:begin + predict_batch] for key, value in arrays.items()})
            starts.append(out.start_logits.numpy())
            ends.append(out.end_logits.numpy())
    predictions, null_odds = postprocess(examples, features, np.concatenate(starts), np.concatenate(ends),
                                         n_best=20, max_answer_length=30)
    metrics = score(examples, predictions, null_odds, False)  # official v1.1 metric, in percent
    return {"side": "transformers", "task": "squad", "seed": seed, "train_examples": count,
            "scores": {key: round(value, 2) for key, value in metrics.items()}, **trained}


#: The metrics the side-by-side table shows per task (key in the scores, label), the task's main one first.
COMPARED: dict[str, list[tuple[str, str]]] = {"mrpc": [("f1", "F1"), ("accuracy", "accuracy")], "cola": [("mcc", "MCC")],
                                              "squad": [("f1", "F1"), ("exact_match", "EM")]}


def spread(values: list[float]) -> str:
    """'mean ± half the range' of one figure over seeds (one seed: the value)."""
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {(max(values) - min(values)) / 2:.2f}"


def side_by_side(ours: dict[str, list[dict[str, Any]]], reference: dict[str, list[dict[str, Any]]]) -> str:
    """One table, both sides per row: each metric's mean and spread over the seeds (percent, as run_task and
    fine_tune give them), and the training sequences/s of each side with their ratio (ours / transformers; above 1:
    ours is faster)."""
    head = ["task", "metric", "seeds", "ours", "transformers", "ours seq/s", "transformers seq/s", "ratio"]
    rows = []
    for task, metrics in COMPARED.items():
        if task not in ours or task not in reference:
            continue
        mine, theirs = ours[task], reference[task]
        speed_ours = sum(r["sequences_per_second"] or 0 for r in mine) / len(mine)
        speed_ref = sum(r["sequences_per_second"] for r in theirs) / len(theirs)
        for i, (key, label) in enumerate(metrics):
            first = i == 0
            rows.append([task.upper() if first else "", label, str(len(mine)) if first else "",
                         spread([r["scores"][key] for r in mine]), spread([r["scores"][key] for r in theirs]),
                         f"{speed_ours:.1f}" if first else "", f"{speed_ref:.1f}" if first else "",
                         f"{speed_ours / speed_ref:.2f}x" if first and speed_ref else ""])
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=sorted(GLUE_NAMES), required=True)
    ap.add_argument("--data", help="the task's GLUE folder (default ../shared/data/<task>)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from finetune_accuracy import DATA, minilm_dir  # noqa: PLC0415 - the bench's own helpers, one folder

    data = Path(opts.data) if opts.data else DATA / opts.task
    result = fine_tune(opts.task, data, minilm_dir(), batch=opts.batch, lr=opts.lr, epochs=opts.epochs, seq=opts.seq,
                       seed=opts.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
