"""Writes tests/data/reference/google_summary.json: the distributions (prep/stats.py) of what Google's
create_pretraining_data.py makes of the test corpus, for test_reference_summary.py to hold prepare-data to.

The test corpus is the one tests/data/conftest.py generates (write_corpus, seed 7), formatted one sentence
per line; Google's script comes from the bert-tensorflow wheel (see data_prep_throughput.py). Rerun after
changing the test corpus or SETTINGS:

    .venv/bin/python bench/data_prep_reference_summary.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path[:0] = [str(REPO / "common"), str(REPO / "trainer")]

from data_prep_throughput import reference_script, run_reference, vocab_path  # noqa: E402

#: The flags both sides use (the test reads them from the stored file).
SETTINGS = {"max_seq_length": 128, "max_predictions_per_seq": 20, "dupe_factor": 10}
OUT = REPO / "tests" / "data" / "reference" / "google_summary.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bert-data-prep-bench"))
    args = ap.parse_args()
    from bert_trainer.prep.corpus import word_list, write_corpus
    from bert_trainer.prep.records import read_records
    from bert_trainer.prep.stats import summarise
    from bert_trainer.prep.text import documents, to_lines
    from bert_trainer.prep.vocab import parse_vocab

    work = Path(args.work)
    vocab = vocab_path()
    tokens = parse_vocab(Path(vocab).read_bytes(), vocab)
    corpus = work / "test-corpus"
    paths = write_corpus(str(corpus), word_list(tokens), wiki_files=2, docs_per_wiki_file=40, books=2,
                         sentences_per_book=200, seed=7)
    formatted = work / "test-corpus-formatted.txt"
    formatted.write_text("".join(to_lines(documents(Path(p).read_text(encoding="utf-8"))) + "\n" for p in paths))
    script = reference_script("pypi", work)
    flags = argparse.Namespace(**SETTINGS)
    out = work / "out_reference_summary" / "reference.tfrecord"
    run = run_reference(script, formatted, out, vocab, flags, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    summary = summarise(read_records(str(out)), tokens.index("[MASK]"), SETTINGS["max_seq_length"])
    OUT.write_text(json.dumps({"generator": "Google's create_pretraining_data.py (bert-tensorflow 1.0.4), "
                                            "bench/data_prep_reference_summary.py",
                               "corpus": "tests/data/conftest.py corpus_dir (write_corpus seed 7), formatted",
                               "settings": {**SETTINGS, "masked_lm_prob": 0.15, "short_seq_prob": 0.1,
                                            "random_seed": 12345},
                               "summary": summary}, indent=2) + "\n")
    print(f"wrote {OUT}: {run['instances']} instances")


if __name__ == "__main__":
    main()
