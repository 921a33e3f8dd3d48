"""``prepare-data``: raw text (Wikipedia extractor output, plain-text books) to
sharded pretraining TFRecords in the standard schema (see README-data.md).

Everything here except ``tasks/prepare_data/driver.py``'s optional Horovod fallback runs
without importing TensorFlow: records are encoded by hand (records.py), which keeps
pool workers light and fast to start.
"""
