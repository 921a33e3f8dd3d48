"""Fine-tuning on SQuAD and GLUE: metrics first; the task drivers build on them."""
