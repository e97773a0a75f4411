#!/usr/bin/env bash
# The GPU check: tests and large-batch benchmarks of the JAX and PyTorch backends.
#
# For a machine with an NVIDIA GPU and CUDA builds of JAX and PyTorch, but no
# Keras, TensorFlow or TFP and no network. Run from anywhere:
#
#   bash benchmarks/download_gpu_wheels.sh   # beforehand, on a machine with network
#   bash benchmarks/gpu_check.sh             # on the GPU machine (.whl/ at the repo root)
#
# Steps, per backend in BACKENDS (default "jax torch"):
#   1. the test suite with MDN_KERAS_TEST_DEVICE=gpu (every test fails unless
#      tensors live on the GPU). Without TensorFlow Probability, the tests that
#      need it are deselected and listed (never skipped silently);
#   2. loss + gradient alone (benchmarks/loss_grad.py) at B up to 1,048,576,
#      K=8, D=16, with achieved bytes/s against the device's peak bandwidth:
#         bytes moved = 4 * B * (2P + D), P = K(2D + 1)
#      (parameters and targets read once, their gradient written once, float32);
#   3. the train step (benchmarks/train_step.py) at B = 65,536 .. 1,048,576;
#   4. if BENCHMARKS names "statistics": mode, quantile and interval of
#      100,000 rows (benchmarks/mixture_statistics.py) and, on PyTorch, the
#      mode's compacting loop against its masked loop (--mode-loops).
# Exits non-zero if any test run fails. QUICK=1 stops the benchmarks at 262,144.
#
# Environment knobs: BACKENDS; QUICK=1; BATCHES (comma list, overrides QUICK);
# TRAIN_BATCHES (the train step's, default BATCHES); TRAIN_ROUNDS (default 7);
# TESTS (pytest paths, default "tests"; "none" skips the tests); BENCHMARKS
# (default "loss_grad train_step"; any of "loss_grad statistics train_step",
# run in that order; "none" skips them);
# TEST_WORKERS (pytest-xdist workers per backend where xdist is installed,
# default 6; 0 runs in one process); LOG_DIR (a folder: each step's output is
# also written there); TEST_DEVICE (default gpu; cpu for a dry run elsewhere).
# The backends' test suites run side by side (they share the GPU; JAX does not
# preallocate it), the benchmarks one after another on an otherwise idle GPU.
# Tests run with JAX_DEFAULT_MATMUL_PRECISION=highest: JAX's GPU default
# multiplies float32 matrices in TF32 (10-bit mantissa), and the suite checks
# float32 arithmetic against float64 references.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BACKENDS="${BACKENDS:-jax torch}"
PY="${PYTHON:-python3}"

echo "===== machine"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv || true
$PY -c "import sys; print('python', sys.version.split()[0])"

# Wheels carried in .whl/: install those whose module is missing, so the
# machine's own numpy / scipy / ml_dtypes (which its JAX was built against) win.
SITE=/tmp/site
mkdir -p "$SITE"
if ls .whl/*.whl >/dev/null 2>&1; then
  to_install=()
  for whl in .whl/*.whl; do
    dist=$(basename "$whl" | cut -d- -f1)
    case "$dist" in
      absl_py) mod=absl ;; markdown_it_py) mod=markdown_it ;; typing_extensions) mod=typing_extensions ;;
      keras_mdn_layer) mod=keras_mdn_layer ;; pygments) mod=pygments ;; *) mod=$dist ;;
    esac
    if $PY -c "import $mod" >/dev/null 2>&1; then
      echo "  have $mod, not installing $(basename "$whl")"
    else
      to_install+=("$whl")
    fi
  done
  if [ ${#to_install[@]} -gt 0 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "${to_install[@]}" || exit 1
  fi
else
  echo "no .whl/ folder: using what is installed"
fi
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# A pytest plugin that deselects, and prints, the tests whose modules are absent
# (TFP: the tests with a TFP fixture; others: the `needs` marker).
PLUGIN_DIR=$(mktemp -d)
cat > "$PLUGIN_DIR/gpu_check_plugin.py" <<'PYEOF'
import importlib.util
import os

TFP_FIXTURES = {"tfp_case", "tfd_module"}


def missing(item):
    """The modules `item` needs that are not installed."""
    wanted = set()
    if TFP_FIXTURES & set(getattr(item, "fixturenames", ())):
        wanted.add("tensorflow_probability")
    for marker in item.iter_markers("needs"):
        wanted.update(marker.args)
    return sorted(m for m in wanted if importlib.util.find_spec(m) is None)


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        absent = missing(item)
        (drop if absent else keep).append((item, absent))
    if drop:
        config.hook.pytest_deselected(items=[item for item, _ in drop])
        items[:] = [item for item, _ in keep]
        lines = [f"[gpu_check] deselected {len(drop)} tests whose modules are not installed:"]
        lines += [f"[gpu_check]   {item.nodeid} (needs {', '.join(absent)})" for item, absent in drop]
        # Under pytest-xdist the workers collect and their output is not shown:
        # the list goes to a file the script prints.
        path = os.environ.get("GPU_CHECK_DESELECTED")
        if path:
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
        else:
            print("\n" + "\n".join(lines))
PYEOF
export PYTHONPATH="$PLUGIN_DIR:$PYTHONPATH"

export XLA_PYTHON_CLIENT_PREALLOCATE=false
# PyTorch: one step at B=1M, D=32 of the mvn_tril candidate allocates 20 GiB
# tensors; without expandable segments fragmentation alone can exhaust the GPU.
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
LOG_DIR="${LOG_DIR:-$(mktemp -d)}"
mkdir -p "$LOG_DIR"
WORKERS="${TEST_WORKERS:-6}"
XDIST=()
if [ "$WORKERS" != 0 ] && $PY -c "import xdist" >/dev/null 2>&1; then
  XDIST=(-n "$WORKERS")
fi

status=0
pids=()
TESTS="${TESTS:-tests}"
BENCHMARKS="${BENCHMARKS:-loss_grad train_step}"
[ "$TESTS" = none ] && TEST_BACKENDS="" || TEST_BACKENDS="$BACKENDS"
for backend in $TEST_BACKENDS; do
  echo "===== KERAS_BACKEND=$backend: tests on the ${TEST_DEVICE:-gpu} (log: $LOG_DIR/tests_$backend.log)"
  GPU_CHECK_DESELECTED="$PLUGIN_DIR/deselected_$backend.txt" \
  KERAS_BACKEND=$backend MDN_KERAS_TEST_DEVICE="${TEST_DEVICE:-gpu}" JAX_DEFAULT_MATMUL_PRECISION=highest \
    $PY -m pytest -q -p no:cacheprovider -p gpu_check_plugin -rs "${XDIST[@]}" $TESTS \
    >"$LOG_DIR/tests_$backend.log" 2>&1 &
  pids+=($!)
done
i=0
for backend in $TEST_BACKENDS; do
  wait "${pids[$i]}" || status=1
  echo "===== KERAS_BACKEND=$backend: test output"
  cat "$PLUGIN_DIR/deselected_$backend.txt" 2>/dev/null
  cat "$LOG_DIR/tests_$backend.log"
  i=$((i + 1))
done

if [ -n "${BATCHES:-}" ]; then
  :
elif [ "${QUICK:-0}" = 1 ]; then
  BATCHES=65536,262144
else
  BATCHES=65536,262144,1048576
fi
case " $BENCHMARKS " in *" loss_grad "*) LG_BACKENDS="$BACKENDS" ;; *) LG_BACKENDS="" ;; esac
case " $BENCHMARKS " in *" statistics "*) ST_BACKENDS="$BACKENDS" ;; *) ST_BACKENDS="" ;; esac
case " $BENCHMARKS " in *" train_step "*) TS_BACKENDS="$BACKENDS" ;; *) TS_BACKENDS="" ;; esac
for backend in $LG_BACKENDS; do
  echo "===== KERAS_BACKEND=$backend: loss + gradient, K=8, D=16"
  KERAS_BACKEND=$backend $PY benchmarks/loss_grad.py --batch "$BATCHES" --rounds 11 \
    2>&1 | tee "$LOG_DIR/loss_grad_$backend.log" || status=1
done
for backend in $ST_BACKENDS; do
  echo "===== KERAS_BACKEND=$backend: statistics of 100,000 rows"
  {
    KERAS_BACKEND=$backend $PY benchmarks/mixture_statistics.py || exit 1
    if [ "$backend" = torch ]; then
      KERAS_BACKEND=$backend $PY benchmarks/mixture_statistics.py --mode-loops 5 || exit 1
    fi
  } 2>&1 | tee "$LOG_DIR/statistics_$backend.log" || status=1
done
TRAIN_BATCHES="${TRAIN_BATCHES:-$BATCHES}"
for backend in $TS_BACKENDS; do
  echo "===== KERAS_BACKEND=$backend: train step, K=5"
  KERAS_BACKEND=$backend $PY benchmarks/train_step.py --batch "$TRAIN_BATCHES" --dims 2,32 \
    --rounds "${TRAIN_ROUNDS:-7}" --loss-grad no 2>&1 | tee "$LOG_DIR/train_step_$backend.log" || status=1
done
rm -rf "$PLUGIN_DIR"
exit $status
