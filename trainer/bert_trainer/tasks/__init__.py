"""Task drivers behind ``python -m bert_trainer <task>`` (pretrain, sync; later prepare-data, squad, glue)."""
