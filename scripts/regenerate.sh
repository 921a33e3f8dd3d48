#!/usr/bin/env bash
# Every checked-in file that is generated (docs/contributing.md, "Regenerated files"), in one command: after a change
# to the API models, a task or the chart, run it and commit what it rewrote.
#   bash scripts/regenerate.sh            CRDs (manifests/ and the chart's crds/), install.yaml, docs/jobs.md, chart README
#   bash scripts/regenerate.sh --golden   also tests/operator/golden/ (UPDATE_GOLDEN=1 on tests/operator/test_render.py)
# Runs this checkout's packages (PYTHONPATH first), with .venv's Python unless PYTHON names another.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD/common:$PWD/operator:$PWD/trainer${PYTHONPATH:+:$PYTHONPATH}"

bertjob() { "$python" -m bert_operator.cli "$@"; }
bertjob crd > manifests/crd.yaml
bertjob crd --policy > manifests/policy-crd.yaml
cp manifests/crd.yaml charts/bert-operator/crds/berttrainingjobs.yaml
cp manifests/policy-crd.yaml charts/bert-operator/crds/berttrainingpolicies.yaml
"$python" scripts/render-install.py
"$python" scripts/render-docs.py
"$python" scripts/render-chart-readme.py
if [ "${1:-}" = "--golden" ]; then
  UPDATE_GOLDEN=1 "$python" -m pytest -q -p no:cacheprovider tests/operator/test_render.py -k golden
fi
git status --short -- manifests charts docs tests/operator/golden
