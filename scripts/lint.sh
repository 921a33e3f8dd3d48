#!/usr/bin/env bash
# ruff and mypy on the three packages (common/bert_common, operator/bert_operator, trainer/bert_trainer), as pyproject.toml configures them
# ([tool.ruff], [tool.mypy]). CI runs this after the install and before pytest; the tools come with
# `bash scripts/bootstrap.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check common operator trainer
.venv/bin/mypy
