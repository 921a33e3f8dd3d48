#!/usr/bin/env bash
# Build Horovod 0.28.1 (its last release) against the TensorFlow in the active
# Python environment, cache the wheel, and install it.
#
# Why a patched source build: 0.28.1's horovod/tensorflow/xla_mpi_ops.cc needs XLA
# headers that TF 2.21 wheels no longer ship. Dropping that one source from
# horovod/tensorflow/CMakeLists.txt loses only the XLA-compiled allreduce op; the
# ordinary TF ops (allreduce, broadcast, DistributedGradientTape) build and work.
#
# Used by CI and Dockerfile.trainer. Env:
#   PYTHON        interpreter whose TensorFlow to build against (default: python3)
#   WHEEL_CACHE   where built wheels are kept (default: <repo>/.cache/wheels)
#   HOROVOD_VERSION (default 0.28.1)
set -euo pipefail

HOROVOD_VERSION="${HOROVOD_VERSION:-0.28.1}"
PYTHON="${PYTHON:-python3}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEEL_CACHE="${WHEEL_CACHE:-$REPO_ROOT/.cache/wheels}"
mkdir -p "$WHEEL_CACHE"
# Build in a scratch folder so no build output lands in the checkout.
cd "${TMPDIR:-/tmp}"

log() { echo "build-horovod: $*" >&2; }

if "$PYTHON" -c "import horovod.tensorflow as h; h.init()" >/dev/null 2>&1; then
  log "horovod.tensorflow already importable; nothing to do"
  exit 0
fi

# Open MPI (runtime + headers) from Debian, unless an MPI is already there.
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicxx >/dev/null 2>&1; then
  log "installing openmpi-bin libopenmpi-dev"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev >/dev/null
fi

TF_VERSION="$("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__)')"
PY_TAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
# The wheel is ABI-bound to the TF it was built against: key the cache by both.
CACHE_DIR="$WHEEL_CACHE/horovod-$HOROVOD_VERSION-tf$TF_VERSION-$PY_TAG"
mkdir -p "$CACHE_DIR"

wheel="$(ls "$CACHE_DIR"/horovod-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$wheel" ]]; then
  log "building horovod $HOROVOD_VERSION against tensorflow $TF_VERSION ($PY_TAG)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --no-deps --no-binary :all: -d "$work" "horovod==$HOROVOD_VERSION" >/dev/null
  tar -xzf "$work"/horovod-"$HOROVOD_VERSION".tar.gz -C "$work"
  src="$work/horovod-$HOROVOD_VERSION"
  cml="$src/horovod/tensorflow/CMakeLists.txt"
  # The one-line patch: comment out the line that adds xla_mpi_ops.cc.
  if ! grep -q 'xla_mpi_ops.cc' "$cml"; then
    log "expected xla_mpi_ops.cc in $cml; the patch no longer applies"; exit 1
  fi
  sed -i '/xla_mpi_ops\.cc/ s/^/# (bert-operator: needs XLA headers TF no longer ships) /' "$cml"
  # Build tools must be in the target env because of --no-build-isolation.
  "$PYTHON" -m pip install -q cmake wheel setuptools >/dev/null
  export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
  export HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1
  export MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-$(nproc)}"
  "$PYTHON" -m pip wheel --no-deps --no-build-isolation -w "$CACHE_DIR" "$src"
  wheel="$(ls "$CACHE_DIR"/horovod-*.whl | head -n1)"
  log "built $wheel"
else
  log "using cached $wheel"
fi

"$PYTHON" -m pip install -q --no-deps "$wheel"
# Horovod's pure-Python runtime deps (horovodrun needs them).
"$PYTHON" -m pip install -q cloudpickle psutil pyyaml packaging
"$PYTHON" -c "import horovod.tensorflow as h; h.init(); print('horovod', h.__version__ if hasattr(h, '__version__') else '', 'size', h.size())"
log "horovod ready"
