"""Mixed precision (issue 4): the MDN head and its loss compute in float32 under
`mixed_float16` and `mixed_bfloat16`, and models train with finite losses on
every backend (CPU included)."""

import keras
import numpy as np
import pytest
from keras import ops

import mdn_keras
from reference import np_log_prob

POLICIES = ("mixed_float16", "mixed_bfloat16")
D, K = 2, 3


def dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


@pytest.fixture(params=POLICIES)
def policy(request):
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy("float32")


def make_data(n=64):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], axis=-1).astype("float32")
    y += 0.1 * rng.normal(size=y.shape).astype("float32")
    return x, y


def test_mdn_head_trains_in_float32_under_mixed_policy(policy):
    compute = policy.split("_")[1]
    keras.utils.set_random_seed(0)
    hidden = keras.layers.Dense(16, activation="tanh")
    head = mdn_keras.MDN(D, K)
    model = keras.Sequential([keras.Input((3,)), hidden, head])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mdn_keras.MDNLoss(D, K))
    x, y = make_data()

    # The policy is really in effect for the body ...
    assert hidden.dtype_policy.name == policy
    assert dtype_name(hidden(x)) == compute
    # ... and the head computes, stores and returns float32.
    assert head.compute_dtype == "float32" and head.variable_dtype == "float32"
    assert dtype_name(head.kernel) == "float32"
    out = model(x)
    assert dtype_name(out) == "float32"
    if policy == "mixed_float16":
        # Keras wraps the optimizer for float16 loss scaling.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    before = float(model.evaluate(x, y, batch_size=16, verbose=0))
    history = model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    after = float(model.evaluate(x, y, batch_size=16, verbose=0))
    assert np.isfinite(after) and after < before

    # The loss value is float32 and is the float32 NLL of the head's output.
    out = model(x)
    value = mdn_keras.MDNLoss(D, K)(y, out)
    assert dtype_name(value) == "float32"
    expected = -np.mean(np_log_prob(ops.convert_to_numpy(out), y, D, K))
    np.testing.assert_allclose(float(ops.convert_to_numpy(value)), expected, rtol=1e-5, atol=1e-5)


def test_targets_beyond_float16_range_stay_finite(policy):
    """The loss casts targets to float32: 7e4 (> float16's max 65504) is no overflow."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), mdn_keras.MDN(1, 2)])
    model.compile(optimizer="adam", loss=mdn_keras.MDNLoss(1, 2))
    x = np.ones((8, 3), "float32")
    y = np.full((8, 1), 7e4, "float32")
    loss = float(model.evaluate(x, y, verbose=0))
    # -log N(7e4; ~0, ~1): huge, but finite and computed in float32.
    assert np.isfinite(loss) and loss > 1e6  # float16 would overflow at 65504
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
