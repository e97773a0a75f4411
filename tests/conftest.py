"""Test configuration shared by every backend.

The suite runs once per `KERAS_BACKEND`, each in its own process
(`scripts/test.sh`). `MDN_KERAS_TEST_DEVICE=gpu` makes every test fail unless
the backend places tensors on a GPU, so a GPU job cannot pass on a CPU.
"""

import os

# Import torch before TensorFlow (as Keras' own suite does) to avoid a known
# symbol clash between the two on some platforms.
try:  # pragma: no cover - depends on what is installed
    import torch  # noqa: F401
except ImportError:
    pass

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()
WANTED_DEVICE = os.environ.get("MDN_KERAS_TEST_DEVICE", "").lower()


def _disable_tf32() -> None:
    """Full float32 matmuls, so float64 references hold on Ampere and newer GPUs."""
    if BACKEND == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif BACKEND == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)


_disable_tf32()


def tensor_device(x) -> str:
    """'gpu' or 'cpu': where the backend placed tensor `x`."""
    if BACKEND == "torch":
        return "gpu" if x.device.type == "cuda" else "cpu"
    if BACKEND == "jax":
        return "gpu" if all(d.platform == "gpu" for d in x.devices()) else "cpu"
    return "gpu" if "GPU" in x.device.upper() else "cpu"


def pytest_configure(config):
    for name in ("tensorflow", "jax", "torch"):
        config.addinivalue_line("markers", f"{name}_only: runs on the {name} backend only")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in ("tensorflow", "jax", "torch"):
            if item.get_closest_marker(f"{name}_only") and BACKEND != name:
                item.add_marker(pytest.mark.skip(reason=f"{name} backend only"))


def pytest_report_header(config):
    x = keras.ops.ones((2,))
    return f"mdn_keras tests: KERAS_BACKEND={BACKEND}, tensors on {tensor_device(x)}"


@pytest.fixture(autouse=True)
def _check_device():
    if WANTED_DEVICE in ("", "default"):
        return
    got = tensor_device(keras.ops.matmul(keras.ops.ones((2, 2)), keras.ops.ones((2, 2))))
    if got != WANTED_DEVICE:
        pytest.fail(
            f"MDN_KERAS_TEST_DEVICE={WANTED_DEVICE} but the {BACKEND} backend "
            f"placed tensors on {got}"
        )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
