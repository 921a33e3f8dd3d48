"""examples/tiny is exactly what scripts/make-tiny-dataset.py writes: generated, reproducible, nothing hand-edited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.local.helpers import TINY_INPUTS


def test_the_generator_reproduces_the_committed_inputs_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make-tiny-dataset.py"), str(out)], check=True,
                   capture_output=True, timeout=120)
    committed = sorted(p.relative_to(TINY_INPUTS) for p in TINY_INPUTS.rglob("*") if p.is_file())
    assert committed == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for relative in committed:
        assert (out / relative).read_bytes() == (TINY_INPUTS / relative).read_bytes(), relative


def test_the_vocab_covers_the_corpus_and_fits_the_model() -> None:
    tokens = (TINY_INPUTS / "vocab.txt").read_text().splitlines()
    assert len(tokens) == 512 and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(set(tokens)) == len(tokens)
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(str(TINY_INPUTS / "vocab.txt"), lowercase=True)
    sentences = [line.split("\t")[3] for line in (TINY_INPUTS / "CoLA" / "dev.tsv").read_text().splitlines()]
    assert sum(tokenizer.encode(sentence).tokens.count("[UNK]") for sentence in sentences) == 0
