"""The three GLUE TSV layouts as the GLUE download ships them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bert_trainer.finetune.glue_data import GlueDataError, read_examples


def test_cola_has_no_header_and_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n")
    examples = read_examples("CoLA", str(tmp_path), "train")
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("Our friends won't buy this analysis.", None, 1), ("They drank the pub.", None, 0)]


def test_mnli_reads_sentence_columns_and_the_gold_label_from_both_dev_splits(tmp_path: Path) -> None:
    header = "index\tpromptID\tpairID\tgenre\ts1_bin\ts2_bin\ts1_parse\ts2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    row = "0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tThe cat sat.\tA cat is sitting.\tentailment\tentailment"
    for split in ("dev_matched", "dev_mismatched"):
        (tmp_path / f"{split}.tsv").write_text(f"{header}\n{row}\n{row.replace('entailment', 'neutral')}\n")
        examples = read_examples("MNLI", str(tmp_path), split)
        assert [(e.text_a, e.text_b, e.label) for e in examples] == [
            ("The cat sat.", "A cat is sitting.", 1), ("The cat sat.", "A cat is sitting.", 2)]


def test_unknown_task_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GlueDataError, match="--task_name: must be one of CoLA, MRPC, MNLI"):
        read_examples("SST-2", str(tmp_path), "train")
    with pytest.raises(GlueDataError, match="train.tsv: cannot read"):
        read_examples("MRPC", str(tmp_path), "train")
