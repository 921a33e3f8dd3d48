"""WordPiece encoding of sentence pairs with Hugging Face `tokenizers` (BERT's normalisation and specials)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from bert_trainer import storage


class VocabError(ValueError):
    """A missing or malformed vocab.txt; the message names the file."""


def load_tokenizer(vocab_uri: str, lower_case: bool, scratch_dir: str):
    """A BertWordPieceTokenizer for `vocab_uri` (local or s3://), checked for BERT's special tokens."""
    from tokenizers import BertWordPieceTokenizer  # noqa: PLC0415

    local = vocab_uri
    if storage.is_s3(vocab_uri):
        local = os.path.join(scratch_dir, "vocab.txt")
        try:
            storage.download_file(vocab_uri, local)
        except storage.StorageError as exc:
            raise VocabError(f"--vocab_file: {vocab_uri}: {exc}") from None
    try:
        with open(local, encoding="utf-8") as handle:
            tokens = {line.rstrip("\n") for line in handle}
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabError(f"--vocab_file: {local}: cannot read ({exc})") from None
    missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]") if t not in tokens]
    if missing:
        raise VocabError(f"--vocab_file: {local}: not a BERT vocab, missing {', '.join(missing)}")
    return BertWordPieceTokenizer(local, lowercase=lower_case, strip_accents=lower_case)


def encode_pairs(tokenizer, texts_a: Sequence[str], texts_b: Sequence[str | None], max_seq_length: int) -> dict[str, np.ndarray]:
    """input_ids / input_mask / segment_ids [N, max_seq_length]; pairs truncated longest-first."""
    tokenizer.enable_truncation(max_length=max_seq_length, strategy="longest_first")
    tokenizer.enable_padding(length=max_seq_length, pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    singles = [i for i, b in enumerate(texts_b) if b is None]
    inputs = [a if b is None else (a, b) for a, b in zip(texts_a, texts_b)]
    if singles and len(singles) != len(inputs):
        raise ValueError("a batch mixes single sentences and pairs")
    encodings = tokenizer.encode_batch(inputs)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int32),
        "input_mask": np.array([e.attention_mask for e in encodings], dtype=np.int32),
        "segment_ids": np.array([e.type_ids for e in encodings], dtype=np.int32),
    }
