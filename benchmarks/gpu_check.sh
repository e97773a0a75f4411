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
#   3. the train step (benchmarks/train_step.py) at B = 65,536 .. 1,048,576.
# Exits non-zero if any test run fails. QUICK=1 stops the benchmarks at 262,144.
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
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${to_install[@]}" || exit 1
  fi
else
  echo "no .whl/ folder: using what is installed"
fi
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# A pytest plugin that deselects, and prints, the tests that need TFP when it is absent.
PLUGIN_DIR=$(mktemp -d)
cat > "$PLUGIN_DIR/gpu_check_plugin.py" <<'PYEOF'
import importlib.util

TFP_FIXTURES = {"tfp_case", "tfd_module"}


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("tensorflow_probability") is not None:
        return
    keep, drop = [], []
    for item in items:
        needs = TFP_FIXTURES & set(getattr(item, "fixturenames", ()))
        (drop if needs else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        print(f"\n[gpu_check] TensorFlow Probability is not installed: deselected {len(drop)} tests:")
        for item in drop:
            print(f"[gpu_check]   {item.nodeid}")
PYEOF
export PYTHONPATH="$PLUGIN_DIR:$PYTHONPATH"

status=0
for backend in $BACKENDS; do
  echo "===== KERAS_BACKEND=$backend: tests on the GPU"
  KERAS_BACKEND=$backend MDN_KERAS_TEST_DEVICE=gpu $PY -m pytest -q -p no:cacheprovider \
    -p gpu_check_plugin -rs tests || status=1
done

if [ "${QUICK:-0}" = 1 ]; then
  BATCHES=65536,262144
else
  BATCHES=65536,262144,1048576
fi
for backend in $BACKENDS; do
  echo "===== KERAS_BACKEND=$backend: loss + gradient, K=8, D=16"
  KERAS_BACKEND=$backend $PY benchmarks/loss_grad.py --batch "$BATCHES" --rounds 11 || status=1
  echo "===== KERAS_BACKEND=$backend: train step, K=5"
  KERAS_BACKEND=$backend $PY benchmarks/train_step.py --batch "$BATCHES" --dims 2,32 \
    --rounds 7 --loss-grad no || status=1
done
rm -rf "$PLUGIN_DIR"
exit $status
