#!/usr/bin/env bash
# Each package in a fresh venv with only its own extra: what the images hold.
#   bash scripts/check-clean-venvs.sh                 both
#   bash scripts/check-clean-venvs.sh trainer         pip install '.[trainer]', then import every bert_trainer module
#   bash scripts/check-clean-venvs.sh operator        pip install '.[operator]', then import every bert_operator module
# Also fails when the other side's distributions were installed (pydantic, kopf or jinja2 with the trainer;
# TensorFlow with the operator). Horovod is left out (a source build; bert_trainer imports it lazily). Slow (the
# trainer's venv downloads TensorFlow), so not part of the test suite: tests/test_packages.py makes the same
# check in the dev venv by refusing those imports. VENV_ROOT (default: a temporary folder) keeps the venvs.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
root="${VENV_ROOT:-$(mktemp -d)}"
sides=("$@")
[ ${#sides[@]} -gt 0 ] || sides=(trainer operator)

for side in "${sides[@]}"; do
  case "$side" in
    # The trainer image holds the serve extra too, whose kserve brings pydantic and kubernetes for its own use.
    trainer) package=bert_trainer other=bert_operator foreign="kopf|jinja2" extras=trainer,serve ;;
    operator) package=bert_operator other=bert_trainer foreign="tensorflow|tensorflow-cpu|horovod|tokenizers" extras=operator ;;
    *) echo "check-clean-venvs: unknown side '$side' (expected trainer or operator)" >&2; exit 2 ;;
  esac
  venv="$root/$side" src="$root/$side-src"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  # What the image's build context holds: pyproject.toml, common/ and this side's folder only, installed from a
  # copy (not editable), so the venv has exactly the packages of that side's wheel.
  rm -rf "$src" && mkdir -p "$src"
  cp -r pyproject.toml README.md common "$side" "$src"/
  find "$src" -name __pycache__ -prune -exec rm -rf {} +
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$src[$extras]"
  if "$venv/bin/python" -m pip list --format=freeze | grep -iE "^($foreign)=="; then
    echo "check-clean-venvs: the $side extra installed the distributions above" >&2
    exit 1
  fi
  # From the venv's site-packages, not this checkout (run outside it).
  (cd "$root" && "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$other') is not None)") \
    || { echo "check-clean-venvs: $other is installed in the $side venv" >&2; exit 1; }
  (cd "$root" && TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" "$OLDPWD/scripts/import-every-module.py" "$package")
done
echo "check-clean-venvs: ok (${sides[*]})"
