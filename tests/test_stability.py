"""The loss and its gradients stay finite at extreme values (issue 4).

Property-based: hypothesis draws raw (pre-activation) head outputs of any
magnitude from 1e-30 to 1e6 and either sign, targets up to 1e4 away from the
means, one-hot mixing weights and collapsed scales. Every drawn case must give
a finite per-example loss and finite gradients with respect to the raw
outputs, computed with the backend's own autodiff, and the loss must match a
float64 NumPy reference. Examples are derandomized, so every run draws the
same cases.

Depth: the default profile ("ci") runs the example counts below. Set
MDN_KERAS_HYPOTHESIS_PROFILE=deep to run `hypothesis_profile.DEEP_EXAMPLES`
(10,000) examples per property (per activation where parametrized), e.g.

    MDN_KERAS_HYPOTHESIS_PROFILE=deep KERAS_BACKEND=jax \
        .venv/bin/python -m pytest -q tests/test_stability.py

(the counts and wall times of such runs are in docs/reliability.md).
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import ops
from scipy import special

import mdn_keras
from backend_utils import value_and_grad
from hypothesis_profile import example_count
from mdn_keras import mdn_nll, scale_from_raw

ACTIVATIONS = ("softplus", "exp", "elu_plus_one")
D, K, BATCH = 2, 3, 4
KD = K * D
P = K * (2 * D + 1)

#: Examples per hypothesis test (per activation where parametrized).
N_EXTREME = 50
N_DOMINANT = 40
N_COLLAPSE = 40


def hyp_settings(max_examples):
    return settings(
        max_examples=example_count(max_examples),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def signed_magnitudes(lo_exp, hi_exp):
    """Floats `sign * 10**e`, `e` uniform in `[lo_exp, hi_exp]`: 1e-30 and 1e6 alike."""
    return st.builds(
        lambda sign, e: sign * 10.0**e,
        st.sampled_from([-1.0, 1.0]),
        st.floats(lo_exp, hi_exp, allow_nan=False),
    )


def row_arrays(n, elements):
    """A `(BATCH, n)` float32 array drawn element-wise."""
    return st.lists(st.lists(elements, min_size=n, max_size=n), min_size=BATCH, max_size=BATCH).map(
        lambda rows: np.asarray(rows, dtype=np.float32)
    )


# ---------------------------------------------------------------- helpers


def nll_from_raw(raw, y, activation, min_scale=1e-4, max_scale=None):
    """What `MDN` + `MDNLoss` compute from the dense output `raw`: per-example NLL."""
    scale = scale_from_raw(raw[..., KD : 2 * KD], activation, min_scale, max_scale)
    params = ops.concatenate([raw[..., :KD], scale, raw[..., 2 * KD :]], axis=-1)
    return mdn_nll(y, params, D, K)


def np_scale(raw, activation, min_scale, max_scale):
    """float64 scale activation, written from `scale_from_raw`'s docstring."""
    raw = raw.astype(np.float64)
    if activation == "exp":
        hi = 1e4 if max_scale is None else max_scale
        return np.exp(0.5 * np.clip(raw, 2 * math.log(min_scale), 2 * math.log(hi)))
    if activation == "softplus":
        scale = np.logaddexp(0.0, raw) + min_scale
    else:
        scale = np.where(raw > 0, raw, np.expm1(np.minimum(raw, 0))) + 1.0 + min_scale
    return scale if max_scale is None else np.minimum(scale, max_scale)


def np_nll(raw, y, activation, min_scale=1e-4, max_scale=None):
    """float64 NLL and, per row, the size of the terms it sums (for a tolerance)."""
    raw64 = raw.astype(np.float64)
    loc = raw64[:, :KD].reshape(-1, K, D)
    scale = np_scale(raw[:, KD : 2 * KD], activation, min_scale, max_scale).reshape(-1, K, D)
    logits = raw64[:, 2 * KD :]
    log_pi = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    z2 = np.sum(((y.astype(np.float64)[:, None, :] - loc) / scale) ** 2, axis=-1)
    log_s = np.sum(np.log(scale), axis=-1)
    comp = log_pi - 0.5 * z2 - log_s - 0.5 * D * math.log(2 * math.pi)
    nll = -special.logsumexp(comp, axis=-1)
    best = np.argmax(comp, axis=-1)
    rows = np.arange(len(best))
    size = (
        1.0
        + np.abs(nll)
        + np.max(np.abs(logits), axis=-1)
        + 0.5 * z2[rows, best]
        + np.abs(log_s[rows, best])
    )
    return nll, size


def check_case(raw, y, activation, min_scale=1e-4, max_scale=None):
    raw = np.asarray(raw, np.float32)
    y = np.asarray(y, np.float32)
    loss, grad = value_and_grad(lambda r: nll_from_raw(r, y, activation, min_scale, max_scale), raw)
    assert loss.shape == (BATCH,) and grad.shape == raw.shape
    assert np.all(np.isfinite(loss)), f"non-finite loss {loss} for raw={raw!r}, y={y!r}"
    assert np.all(np.isfinite(grad)), f"non-finite gradient {grad} for raw={raw!r}, y={y!r}"
    expected, size = np_nll(raw, y, activation, min_scale, max_scale)
    representable = np.abs(expected) < 1e37
    np.testing.assert_array_less(
        np.abs(loss - expected)[representable], (1e-5 * size)[representable] + 1e-30
    )
    return loss, grad


# ---------------------------------------------------------------- properties


@st.composite
def extreme_cases(draw):
    raw = draw(row_arrays(P, signed_magnitudes(-30, 6)))
    # Each target sits next to one component's mean, up to 1e4 away from it.
    k = draw(st.lists(st.integers(0, K - 1), min_size=BATCH, max_size=BATCH))
    offset = draw(row_arrays(D, st.one_of(st.just(0.0), signed_magnitudes(-30, 4))))
    loc = raw[:, :KD].reshape(BATCH, K, D)
    y = (loc[np.arange(BATCH), k] + offset).astype(np.float32)
    return raw, y


@pytest.mark.parametrize("activation", ACTIVATIONS)
@hyp_settings(N_EXTREME)
@given(case=extreme_cases())
def test_extreme_raw_outputs_give_finite_loss_and_gradients(activation, case):
    raw, y = case
    check_case(raw, y, activation)


@st.composite
def dominant_component_cases(draw):
    """All the mixing weight on one component; the target often next to another."""
    raw = draw(row_arrays(P, signed_magnitudes(-3, 3)))
    big = draw(st.sampled_from([1e3, 1e6]))
    winner = draw(st.integers(0, K - 1))
    logits = np.full((BATCH, K), -big, np.float32)
    logits[:, winner] = big
    raw[:, 2 * KD :] = logits
    near = draw(st.integers(0, K - 1))
    offset = draw(row_arrays(D, signed_magnitudes(-30, 4)))
    y = (raw[:, :KD].reshape(BATCH, K, D)[:, near] + offset).astype(np.float32)
    activation = draw(st.sampled_from(ACTIVATIONS))
    return raw, y, activation, winner, near, big


@hyp_settings(N_DOMINANT)
@given(case=dominant_component_cases())
def test_one_hot_mixing_weights_give_finite_loss_and_gradients(case):
    raw, y, activation, winner, near, big = case
    loss, grad = check_case(raw, y, activation)
    # The losing components' logits get (almost) no gradient, the winner's
    # gets the posterior mass it misses: all finite, none NaN.
    # (softmax - posterior, so in [-1, 1] and summing to 0, up to the float32
    # rounding of log-softmax at logits of size `big`.)
    logit_grad = grad[:, 2 * KD :]
    tol = 1e-6 + 4 * np.finfo(np.float32).eps * big
    assert np.all(np.abs(logit_grad) <= 1.0 + tol)
    np.testing.assert_allclose(logit_grad.sum(axis=-1), 0.0, atol=K * tol)


@st.composite
def collapse_cases(draw):
    """Targets exactly on the means, raw scales pushed far below the floor."""
    raw = draw(row_arrays(P, signed_magnitudes(-3, 3)))
    raw[:, KD : 2 * KD] = draw(row_arrays(KD, signed_magnitudes(1, 6).map(lambda v: -abs(v))))
    k = draw(st.integers(0, K - 1))
    y = raw[:, :KD].reshape(BATCH, K, D)[:, k].copy()
    activation = draw(st.sampled_from(ACTIVATIONS))
    min_scale = draw(st.sampled_from([1e-8, 1e-6, 1e-4, 1e-2]))
    return raw, y, activation, min_scale


@hyp_settings(N_COLLAPSE)
@given(case=collapse_cases())
def test_collapsed_scales_stop_at_the_floor(case):
    raw, y, activation, min_scale = case
    check_case(raw, y, activation, min_scale=min_scale)
    scale = ops.convert_to_numpy(scale_from_raw(raw[:, KD : 2 * KD], activation, min_scale))
    # The floor holds in float32 to a relative 1e-5 for every activation.
    assert np.all(scale >= min_scale * (1 - 1e-5)), (activation, min_scale, scale.min())
    # Below raw = -30 (-60 for exp's log-variance) every activation sits on its floor.
    deep = raw[:, KD : 2 * KD] < -60
    np.testing.assert_allclose(scale[deep], min_scale, rtol=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_scale_floor_is_exact_in_float32(activation):
    """`min_scale` is the floor itself, not a value rounded through `1 + min_scale`."""
    raw = np.full((3,), -1e6, np.float32)
    for min_scale in (1e-8, 1e-6, 1e-4):
        scale = ops.convert_to_numpy(scale_from_raw(raw, activation, min_scale))
        np.testing.assert_allclose(scale, min_scale, rtol=1e-5)


# ---------------------------------------------------------------- training


def test_training_on_duplicated_points_collapses_to_the_floor():
    """1,000 steps on 64 copies of one point: no NaN, and the scale reaches the floor."""
    min_scale = 1e-4
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((1,)), mdn_keras.MDN(1, 2, min_scale=min_scale)])
    # RMSprop: its per-step move is bounded by ~lr whatever the gradient size
    # (the gradient of the mean grows like 1/scale**2 as the scale collapses).
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss=mdn_keras.MDNLoss(1, 2))
    # 10 epochs of 100 batches, each batch 64 copies of the same point.
    x = np.ones((6400, 1), np.float32)
    y = np.full((6400, 1), 0.3, np.float32)
    steps = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: steps.append(float(logs["loss"]))
    )
    model.fit(x, y, batch_size=64, epochs=10, shuffle=False, verbose=0, callbacks=[callback])
    assert len(steps) == 1000
    # (Per-batch logs are running means over the epoch: one NaN step poisons them.)
    assert np.all(np.isfinite(steps)), "NaN/inf loss during collapse"
    params = ops.convert_to_numpy(model(x[:1]))
    logits, loc, scale = (ops.convert_to_numpy(t) for t in mdn_keras.split_params(params, 1, 2))
    top = int(np.argmax(logits[0]))
    assert abs(loc[0, top, 0] - 0.3) < 1e-3
    assert scale[0, top, 0] < 2 * min_scale, scale
    # The best possible loss is -log N(0; 0, min_scale) = log(min_scale) + log(2 pi) / 2.
    floor_loss = math.log(min_scale) + 0.5 * math.log(2 * math.pi)
    final = float(model.evaluate(x, y, batch_size=64, verbose=0))
    assert floor_loss - 1e-3 <= final < floor_loss + 0.1
