#!/usr/bin/env bash
# Sets up .venv and runs the test suite once per Keras backend, each in its own
# process, after the lint and type gates (ruff check, ruff format --check,
# mypy mdn_keras). Exits non-zero if a gate or any backend fails. Extra
# arguments go to pytest.
#   usage: bash scripts/test.sh [pytest args]
#   BACKENDS="jax torch" bash scripts/test.sh      # a subset of the matrix
#   MDN_KERAS_TEST_DEVICE=gpu bash scripts/test.sh # fail unless tensors live on a GPU
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "tensorflow,jax,torch,tfp,test,bench,lint,export" || exit 1
echo "===== gates: ruff check, ruff format --check, mypy ====="
.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check . || exit 1
.venv/bin/mypy mdn_keras || exit 1
backends="${BACKENDS:-tensorflow jax torch}"
mkdir -p .test-results
status=0
for backend in $backends; do
  echo "===== KERAS_BACKEND=$backend ====="
  rm -f ".test-results/$backend.xml"
  KERAS_BACKEND="$backend" .venv/bin/python -m pytest -q -p no:cacheprovider \
    --junitxml=".test-results/$backend.xml" "$@" || status=1
done
.venv/bin/python scripts/summarize.py $backends || status=1
exit $status
