"""Importing the package stays light: no TensorFlow under JAX or PyTorch, never TFP."""

import json
import os
import subprocess
import sys

import pytest

from backend_utils import BACKEND

PROBE = (
    "import sys, json, mdn_keras; "
    "print(json.dumps({m: m in sys.modules for m in ('tensorflow', 'tensorflow_probability')}))"
)


def loaded_modules(backend):
    env = {**os.environ, "KERAS_BACKEND": backend}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="checks the JAX/PyTorch import; run under those"
)
def test_import_does_not_load_tensorflow_or_tfp():
    loaded = loaded_modules(BACKEND)
    assert loaded == {"tensorflow": False, "tensorflow_probability": False}


@pytest.mark.tensorflow_only
def test_import_does_not_load_tfp_under_tensorflow():
    assert loaded_modules("tensorflow")["tensorflow_probability"] is False


def test_public_api():
    import mdn_keras

    for name in mdn_keras.__all__:
        assert hasattr(mdn_keras, name), name
    assert mdn_keras.__version__.count(".") == 2
