#!/usr/bin/env bash
# Creates .venv (if missing) and installs mdn_keras with the given extras,
# pinned by constraints/ci.txt. Idempotent: reinstalls only when the extras,
# pyproject.toml or the constraints change.
#   usage: bash scripts/setup.sh "jax,examples"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-tensorflow,jax,torch,tfp,test,examples,bench,export}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.mdn_keras-$(echo "$extras" | tr ',' '-')"
want="$(cat pyproject.toml constraints/ci.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] .venv is up to date for extras [$extras]"
  exit 0
fi
echo "[setup] installing mdn_keras[$extras] into .venv (first run downloads the backends)"
free_kb="$(df -Pk . | awk 'NR == 2 {print $4}')"
if [ -n "$free_kb" ] && [ "$free_kb" -lt $((6 * 1024 * 1024)) ]; then
  echo "[setup] warning: $((free_kb / 1024)) MB free here; all backends need about 5 GB in .venv" >&2
fi
log=.venv/install.log
if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install --disable-pip-version-check \
         -c constraints/ci.txt -e ".[$extras]"; } > "$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "[setup] pip install failed; full log in $log" >&2
  exit 1
fi
echo "$want" > "$stamp"
