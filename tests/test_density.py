"""log_prob, component_log_prob and split_params against float64 references."""

import math

import numpy as np
import pytest
from keras import ops

import mdn_keras
from backend_utils import compiled, to_numpy, value_and_grad
from reference import np_log_prob, np_split, random_params

CASES = [  # (leading axes, output_dim D, num_mixtures K)
    ((), 1, 1),
    ((7,), 1, 3),
    ((5,), 3, 4),
    ((2, 3), 2, 5),
    ((2, 3, 4), 4, 2),
]


@pytest.mark.parametrize("lead,d,k", CASES)
def test_log_prob_matches_float64_reference(rng, lead, d, k):
    params = random_params(rng, lead, d, k)
    y = rng.normal(0, 2, size=(*lead, d)).astype("float32")
    got = to_numpy(mdn_keras.log_prob(params, y, d, k))
    assert got.shape == lead
    np.testing.assert_allclose(got, np_log_prob(params, y, d, k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lead,d,k", CASES)
def test_split_params_layout(rng, lead, d, k):
    params = random_params(rng, lead, d, k)
    logits, loc, scale = (to_numpy(t) for t in mdn_keras.split_params(params, d, k))
    ref = np_split(params, d, k)
    assert logits.shape == (*lead, k) and loc.shape == scale.shape == (*lead, k, d)
    for got, want in zip((logits, loc, scale), ref, strict=True):
        np.testing.assert_array_equal(got, want.astype("float32"))
    rejoined = to_numpy(mdn_keras.join_params(logits, loc, scale))
    np.testing.assert_array_equal(rejoined, params)


def test_component_log_prob_sums_to_log_prob(rng):
    params = random_params(rng, (6,), 2, 3)
    y = rng.normal(size=(6, 2)).astype("float32")
    comp = to_numpy(mdn_keras.component_log_prob(params, y, 2, 3))
    assert comp.shape == (6, 3)
    total = np.log(np.exp(comp.astype("float64")).sum(-1))
    np.testing.assert_allclose(total, np_log_prob(params, y, 2, 3), rtol=1e-5)


def test_includes_normalising_constant():
    # One standard normal component in D dims: log p(0) = -D/2 log(2 pi).
    for d in (1, 3):
        params = np.concatenate([np.zeros(d), np.ones(d), [0.0]]).astype("float32")
        got = float(to_numpy(mdn_keras.log_prob(params, np.zeros(d, "float32"), d, 1)))
        assert got == pytest.approx(-0.5 * d * math.log(2 * math.pi), rel=1e-6)


def test_targets_broadcast_and_1d_target_without_last_axis(rng):
    params = random_params(rng, (4, 5), 1, 3)
    y = rng.normal(size=(4, 5)).astype("float32")
    with_axis = to_numpy(mdn_keras.log_prob(params, y[..., None], 1, 3))
    without_axis = to_numpy(mdn_keras.log_prob(params, y, 1, 3))
    np.testing.assert_array_equal(with_axis, without_axis)
    # One target row broadcast against many parameter rows.
    y0 = y[:1, :1, None]
    got = to_numpy(mdn_keras.log_prob(params, y0, 1, 3))
    want = np_log_prob(params, np.broadcast_to(y0, (4, 5, 1)), 1, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_computes_in_the_dtype_of_params(rng):
    # float64 stays float64 (JAX without jax_enable_x64 stores float64 as float32).
    params = random_params(rng, (3,), 2, 2, dtype="float64")
    y = rng.normal(size=(3, 2))
    stored = ops.convert_to_tensor(params).dtype
    got = mdn_keras.log_prob(params, y, 2, 2)
    assert str(got.dtype) == str(stored)
    rtol = 1e-12 if "64" in str(stored) else 1e-5
    np.testing.assert_allclose(to_numpy(got), np_log_prob(params, y, 2, 2), rtol=rtol)


def test_gradients_are_finite_and_match_finite_differences(rng):
    d, k = 2, 3
    params = random_params(rng, (5,), d, k, dtype="float64")
    y = rng.normal(size=(5, d))

    def fn(p):
        return mdn_keras.log_prob(p, ops.convert_to_tensor(y), d, k)

    value, grad = value_and_grad(fn, params)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    eps = 1e-6
    for j in range(params.shape[-1]):
        bump = np.zeros_like(params)
        bump[:, j] = eps
        fd = (np_log_prob(params + bump, y, d, k) - np_log_prob(params - bump, y, d, k)) / (2 * eps)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-5, atol=1e-7)


def test_far_targets_stay_finite():
    # Targets 1e4 standard deviations away: linear-space densities underflow to 0.
    params = np.array([0.0, 5.0, 1.0, 1.0, 0.0, 0.0], "float32")
    y = np.array([[1e4]], "float32")
    got = float(to_numpy(mdn_keras.log_prob(params[None], y, 1, 2))[0])
    assert np.isfinite(got)
    assert got == pytest.approx(float(np_log_prob(params[None], y, 1, 2)[0]), rel=1e-6)


def test_log_prob_compiles(rng):
    params = random_params(rng, (8,), 2, 3)
    y = rng.normal(size=(8, 2)).astype("float32")
    fn = compiled(lambda p, t: mdn_keras.log_prob(p, t, 2, 3))
    np.testing.assert_allclose(
        to_numpy(fn(ops.convert_to_tensor(params), ops.convert_to_tensor(y))),
        np_log_prob(params, y, 2, 3),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "shape,match",
    [
        (
            (32, 24),
            r"num_mixtures \* \(2 \* output_dim \+ 1\) = 5 \* \(2 \* 2 \+ 1\) = 25\. "
            r"Received: params.shape=\(32, 24\)",
        ),
        ((26,), r"= 25\. Received: params.shape=\(26,\)"),
    ],
)
def test_wrong_params_size_raises(shape, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.log_prob(np.zeros(shape, "float32"), np.zeros((32, 2), "float32"), 2, 5)
    with pytest.raises(ValueError, match=match):
        mdn_keras.split_params(np.zeros(shape, "float32"), 2, 5)


def test_wrong_target_shape_raises(rng):
    params = random_params(rng, (32,), 2, 5)
    with pytest.raises(
        ValueError, match=r"\(\.\.\., 2\).*Received: y.shape=\(32, 3\), params.shape=\(32, 25\)"
    ):
        mdn_keras.log_prob(params, np.zeros((32, 3), "float32"), 2, 5)
    with pytest.raises(ValueError, match=r"Received: y.shape=\(16, 2\)"):
        mdn_keras.log_prob(params, np.zeros((16, 2), "float32"), 2, 5)


def test_integer_params_raise():
    with pytest.raises(ValueError, match=r"floating-point.*Received: params.dtype=int"):
        mdn_keras.log_prob(np.zeros((2, 3), "int32"), np.zeros((2, 1)), 1, 1)
