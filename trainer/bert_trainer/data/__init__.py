"""Pretraining data: TFRecord schema, input pipeline, synthetic record writer."""
