#!/usr/bin/env bash
# Sets up .venv for the chosen backend (JAX unless KERAS_BACKEND says otherwise)
# and runs the main example, Bishop's inverse problem. Idempotent.
#   usage: bash scripts/example.sh        KERAS_BACKEND=torch bash scripts/example.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
case "$KERAS_BACKEND" in
  tensorflow|jax|torch) ;;
  *) echo "KERAS_BACKEND must be tensorflow, jax or torch; got '$KERAS_BACKEND'" >&2; exit 2 ;;
esac
bash scripts/setup.sh "$KERAS_BACKEND,examples"
.venv/bin/python examples/bishop_inverse.py "$@"
