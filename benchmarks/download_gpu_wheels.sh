#!/usr/bin/env bash
# Downloads the wheels benchmarks/gpu_check.sh installs on a GPU machine without
# network access, into .whl/ at the repository root (git-ignored).
#
# Target: CPython 3.12, manylinux x86_64. The machine is assumed to have CUDA
# builds of JAX and PyTorch, which bring numpy, scipy and ml_dtypes (and
# matplotlib, which tests/test_plot.py needs); pass --all
# to carry those three as well (about 50 MiB more). Versions are those of
# constraints/ci.txt where it pins them, else the versions the suite was run with.
#
#   usage: bash benchmarks/download_gpu_wheels.sh [--all] [--python-version 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=3.12
WITH_ALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all) WITH_ALL=1 ;;
    --python-version) PYVER="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
PIP="${PIP:-python3 -m pip}"

pin() {  # pin NAME DEFAULT_VERSION: constraints/ci.txt's version if it has one
  local v
  v=$(grep -i "^$1==" constraints/ci.txt | head -1 | cut -d= -f3 || true)
  echo "$1==${v:-$2}"
}

pkgs=(
  "$(pin keras 3.15.1)" "$(pin namex 0.1.0)" "$(pin optree 0.20.0)"
  "$(pin typing_extensions 4.16.0)" "$(pin rich 15.0.0)" "$(pin markdown-it-py 4.3.0)"
  "$(pin mdurl 0.1.2)" "$(pin pygments 2.21.0)" "$(pin h5py 3.14.0)"
  "$(pin absl-py 2.5.1)" "$(pin packaging 26.4)" "$(pin pytest 9.2.0)"
  "$(pin pluggy 1.7.0)" "$(pin iniconfig 2.3.1)" "$(pin hypothesis 6.170.17)"
  "$(pin sortedcontainers 2.4.0)" "$(pin keras-mdn-layer 1.0.0)"
  "$(pin scoringrules 0.10.0)" "$(pin properscoring 0.1)"
)
if [ "$WITH_ALL" = 1 ]; then
  pkgs+=("$(pin numpy 2.4.6)" "$(pin scipy 1.17.1)" "$(pin ml_dtypes 0.6.0)")
fi

mkdir -p .whl
echo "downloading ${#pkgs[@]} wheels for CPython $PYVER manylinux x86_64 into .whl/:"
printf '  %s\n' "${pkgs[@]}"
$PIP download -q --no-deps --only-binary=:all: --dest .whl \
  --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  "${pkgs[@]}"
ls -l .whl
total=$(du -sm .whl | cut -f1)
echo "total: ${total} MiB in .whl/"
if [ "$total" -gt 60 ]; then
  echo "warning: over 60 MiB; the transfer limit may refuse it" >&2
fi
