"""MDNLoss: exact per-example NLL, Keras reductions, sample weights, config."""

import keras
import numpy as np
import pytest

import mdn_keras
from backend_utils import to_numpy
from reference import np_log_prob, random_params


@pytest.mark.parametrize("lead,d,k", [((16,), 1, 3), ((8,), 3, 2), ((4, 6), 2, 5)])
def test_per_example_nll_matches_reference(rng, lead, d, k):
    params = random_params(rng, lead, d, k)
    y = rng.normal(size=(*lead, d)).astype("float32")
    want = -np_log_prob(params, y, d, k)
    loss = mdn_keras.MDNLoss(d, k, reduction="none")
    np.testing.assert_allclose(to_numpy(loss(y, params)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(mdn_keras.mdn_nll(y, params, d, k)), want, rtol=1e-5, atol=1e-5
    )
    summed = float(to_numpy(mdn_keras.MDNLoss(d, k, reduction="sum")(y, params)))
    assert summed == pytest.approx(want.sum(), rel=1e-5)
    mean = float(to_numpy(mdn_keras.MDNLoss(d, k)(y, params)))
    assert mean == pytest.approx(want.mean(), rel=1e-5)


def test_sample_weight_per_example_and_per_timestep(rng):
    params = random_params(rng, (4, 6), 2, 3)
    y = rng.normal(size=(4, 6, 2)).astype("float32")
    nll = -np_log_prob(params, y, 2, 3)
    loss = mdn_keras.MDNLoss(2, 3)
    w_example = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    # Keras broadcasts weights against the (batch, time) losses: (batch, 1) per example.
    got = float(to_numpy(loss(y, params, sample_weight=w_example[:, None])))
    assert got == pytest.approx((nll * w_example[:, None]).sum() / nll.size, rel=1e-5)
    w_step = rng.uniform(0, 1, size=(4, 6)).astype("float32")
    got = float(to_numpy(loss(y, params, sample_weight=w_step)))
    assert got == pytest.approx((nll * w_step).sum() / nll.size, rel=1e-5)


def test_1d_targets_without_last_axis_in_fit():
    keras.utils.set_random_seed(0)
    x = np.linspace(-1, 1, 32, dtype="float32")[:, None]
    y_flat = (2 * x[:, 0]).astype("float32")
    model = keras.Sequential([keras.Input((1,)), mdn_keras.MDN(1, 2)])
    model.compile(optimizer="sgd", loss=mdn_keras.MDNLoss(1, 2))
    flat = model.evaluate(x, y_flat, verbose=0)
    col = model.evaluate(x, y_flat[:, None], verbose=0)
    assert flat == pytest.approx(col, rel=1e-6)
    want = -np_log_prob(model.predict(x, verbose=0), y_flat[:, None], 1, 2).mean()
    assert flat == pytest.approx(want, rel=1e-5)


def test_config_round_trip_and_registration():
    loss = mdn_keras.MDNLoss(3, 4, reduction="sum", name="nll")
    config = keras.losses.serialize(loss)
    restored = keras.losses.deserialize(config)
    assert isinstance(restored, mdn_keras.MDNLoss)
    assert (restored.output_dim, restored.num_mixtures, restored.reduction, restored.name) == (
        3,
        4,
        "sum",
        "nll",
    )


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, 3), r"Received: output_dim=0"),
        ((2, -1), r"Received: num_mixtures=-1"),
        ((True, 2), r"Received: output_dim=True"),
    ],
)
def test_invalid_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.MDNLoss(*args)


def test_mismatched_head_raises_with_shapes():
    loss = mdn_keras.MDNLoss(2, 5)
    with pytest.raises(ValueError, match=r"= 25\. Received: params.shape=\(32, 24\)"):
        loss(np.zeros((32, 2), "float32"), np.zeros((32, 24), "float32"))
