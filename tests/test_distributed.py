"""Data-parallel training (issue 4): an MDN model trained under
`keras.distribution.DataParallel` (JAX, 4 virtual CPU devices) or
`tf.distribute.MirroredStrategy` (TensorFlow, 2 logical CPUs) gives the same
per-epoch losses as single-device training from the same initial weights.

The device count has to be fixed before the backend starts, so each test runs
this file as a script in a subprocess (`python tests/test_distributed.py jax|tensorflow`).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

EPOCHS, BATCH = 3, 16  # BATCH divisible by both device counts
TOL = 1e-4


def make_data(n=64):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = np.stack([np.sin(x[:, 0]) + 0.1 * x[:, 1], x[:, 2] ** 2], axis=-1).astype("float32")
    return x, y


def build_and_fit(weights=None):
    import keras

    import mdn_keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(16, activation="tanh"), mdn_keras.MDN(2, 3)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mdn_keras.MDNLoss(2, 3))
    if weights is not None:
        model.set_weights(weights)
    initial = model.get_weights()
    x, y = make_data()
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return model, initial, history.history["loss"]


def jax_body():
    import jax
    import keras

    devices = jax.devices()
    _, initial, single = build_and_fit()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    model, _, parallel = build_and_fit(initial)
    kernel = model.layers[-1].kernel.value
    return {
        "devices": len(devices),
        "kernel_devices": len(kernel.sharding.device_set),
        "single": single,
        "parallel": parallel,
    }


def tensorflow_body():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    _, initial, single = build_and_fit()
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model, _, parallel = build_and_fit(initial)
    return {
        "devices": strategy.num_replicas_in_sync,
        "kernel_devices": len(model.layers[-1].kernel.value.values),
        "single": single,
        "parallel": parallel,
    }


def run_body(backend, expected_devices, extra_env):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **extra_env}
    proc = subprocess.run(
        [sys.executable, __file__, backend], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == expected_devices
    assert result["kernel_devices"] == expected_devices  # variables really replicated
    single, parallel = np.array(result["single"]), np.array(result["parallel"])
    assert single.shape == (EPOCHS,) and np.all(np.isfinite(parallel))
    assert single[-1] < single[0]  # it learns something, so equal losses mean equal runs
    np.testing.assert_allclose(parallel, single, rtol=TOL, atol=TOL)


@pytest.mark.jax_only
def test_data_parallel_on_4_virtual_jax_devices_matches_one_device():
    # Virtual host devices: on the CPU platform, also where a GPU is the default.
    run_body(
        "jax", 4, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    )


@pytest.mark.tensorflow_only
def test_mirrored_strategy_on_2_logical_cpus_matches_one_device():
    run_body("tensorflow", 2, {})


if __name__ == "__main__":
    body = {"jax": jax_body, "tensorflow": tensorflow_body}[sys.argv[1]]
    print(json.dumps(body()))
