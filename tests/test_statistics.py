"""Mixture statistics against float64 NumPy/SciPy references, on every backend."""

import math
import os

import keras
import numpy as np
import pytest
from scipy import optimize, special, stats

import mdn_keras
from family_reference import np_mixture_cdf_1d, random_family_params
from mdn_keras import (
    mixture_cdf,
    mixture_mean,
    mixture_mode,
    mixture_quantile,
    mixture_stddev,
    mixture_variance,
    most_probable_component_mean,
    prediction_interval,
)
from mdn_keras.params import join_params
from reference import np_log_prob, np_split, random_params

BACKEND = keras.backend.backend()
BATCH_SHAPES = [(), (10,), (4, 6)]


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def compute(fn, *args):
    """`fn(*args)` as NumPy (a tuple stays a tuple).

    On JAX the function runs under `jax.jit`: that checks the statistics are
    jit-friendly, and one compilation is much faster than JAX's op-by-op
    eager mode on a new shape. TensorFlow and PyTorch run eagerly.
    """
    if BACKEND == "jax":
        import jax

        fn = jax.jit(fn)
    out = fn(*args)
    return tuple(to_np(t) for t in out) if isinstance(out, (tuple, list)) else to_np(out)


# --- float64 references, written without the package ----------------------------


def np_moments(params, d, k):
    logits, loc, scale = np_split(params, d, k)
    pi = special.softmax(logits, axis=-1)
    mean = np.zeros(loc.shape[:-2] + (d,))
    second = np.zeros_like(mean)
    for j in range(k):
        mean += pi[..., j, None] * loc[..., j, :]
        second += pi[..., j, None] * (scale[..., j, :] ** 2 + loc[..., j, :] ** 2)
    return mean, second - mean**2


def np_cdf_row(logits, loc, scale, y):
    """Float64 CDF of one 1-D mixture row (`(K,)` parts) at points `y`."""
    pi = special.softmax(logits)
    y = np.asarray(y, np.float64)[..., None]
    return np.sum(pi * stats.norm.cdf(y, loc, scale), axis=-1)


def np_quantile_row(logits, loc, scale, q):
    lo = np.min(loc - 50 * scale)
    hi = np.max(loc + 50 * scale)
    return optimize.brentq(
        lambda t: np_cdf_row(logits, loc, scale, t) - q, lo, hi, xtol=1e-12, rtol=1e-14
    )


def np_logp_row(logits, loc, scale, x):
    """Float64 log-density of one `(K, D)` mixture row at points `x` of shape `(N, D)`."""
    log_pi = logits - special.logsumexp(logits)
    z = (x[:, None, :] - loc) / scale
    log_n = (
        -0.5 * np.sum(z**2, -1)
        - np.sum(np.log(scale), -1)
        - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
    )
    return special.logsumexp(log_pi + log_n, axis=-1)


def np_best_mode_row(logits, loc, scale):
    """Highest log-density a float64 BFGS finds from every component mean."""
    best = -np.inf
    for start in loc:
        res = optimize.minimize(
            lambda x: -np_logp_row(logits, loc, scale, x[None])[0],
            start,
            method="BFGS",
            options={"gtol": 1e-10},
        )
        best = max(best, -res.fun)
    return best


def rows_1d(params, k):
    logits, loc, scale = np_split(params, 1, k)
    lead = logits.shape[:-1]
    return lead, logits, loc[..., 0], scale[..., 0]


# --- mean, variance, stddev, most probable component ---------------------------


@pytest.mark.parametrize("batch", BATCH_SHAPES)
@pytest.mark.parametrize("d,k", [(1, 4), (3, 2)])
def test_moments_match_reference(batch, d, k, rng):
    params = random_params(rng, batch, d, k)
    ref_mean, ref_var = np_moments(params, d, k)
    mean, var, std = compute(
        lambda p: (mixture_mean(p, d, k), mixture_variance(p, d, k), mixture_stddev(p, d, k)),
        params,
    )
    assert mean.shape == var.shape == std.shape == (*batch, d)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, ref_var, rtol=1e-5)
    np.testing.assert_allclose(std, np.sqrt(ref_var), rtol=1e-5)


def test_variance_of_a_single_component_is_its_scale_squared(rng):
    params = random_params(rng, (7,), 2, 1)
    _, loc, scale = np_split(params, 2, 1)
    mean, var = compute(lambda p: (mixture_mean(p, 2, 1), mixture_variance(p, 2, 1)), params)
    np.testing.assert_allclose(mean, loc[:, 0], rtol=1e-6)
    np.testing.assert_allclose(var, scale[:, 0] ** 2, rtol=1e-6)


def test_variance_is_exact_far_from_the_origin():
    # Two components at 1e4 +- 1 with scale 0.1: E[y^2] - E[y]^2 would lose
    # everything in float32; the law of total variance gives 1 + 0.01 exactly.
    params = join_params(
        np.zeros((2,), np.float32),
        np.array([[1e4 - 1.0], [1e4 + 1.0]], np.float32),
        np.full((2, 1), 0.1, np.float32),
    )
    var = compute(lambda p: mixture_variance(p, 1, 2), params)
    np.testing.assert_allclose(var, [1.01], rtol=1e-5)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_most_probable_component_mean(batch, rng):
    params = random_params(rng, batch, 2, 3)
    logits, loc, _ = np_split(params, 2, 3)
    want = np.take_along_axis(loc, np.argmax(logits, -1)[..., None, None], axis=-2)[..., 0, :]
    got = compute(lambda p: most_probable_component_mean(p, 2, 3), params)
    assert got.shape == (*batch, 2)
    np.testing.assert_allclose(got, want, rtol=1e-6)


# --- mode -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCH_SHAPES)
@pytest.mark.parametrize("d", [1, 2])
def test_mode_beats_every_component_mean_and_a_float64_optimiser(batch, d, rng):
    k = 3
    params = random_params(rng, batch, d, k)
    mode = compute(lambda p: mixture_mode(p, d, k), params)
    assert mode.shape == (*batch, d)
    logits, loc, scale = np_split(params, d, k)
    for idx in np.ndindex(*batch):
        row = logits[idx], loc[idx], scale[idx]
        at_mode = np_logp_row(*row, mode[idx][None].astype(np.float64))[0]
        at_means = np_logp_row(*row, loc[idx])
        assert at_mode >= at_means.max() - 1e-6
        if d == 2 and len(batch) == 2 and idx[1] > 1:
            continue  # the BFGS reference is slow; eight 2-D rows of this batch suffice
        assert at_mode >= np_best_mode_row(*row) - 1e-5


def test_mode_of_well_separated_mixture_is_the_highest_peak_not_the_heaviest_weight():
    # Component 0 has the largest weight (0.6) but a wide scale, so its peak
    # 0.6 / (2 pi 2^2) is below component 1's 0.3 / (2 pi 0.5^2); the true mode
    # is component 1's mean (neighbours 10+ scales away shift it by < 1e-20).
    loc = np.array([[-10.0, 0.0], [3.0, 4.0], [12.0, -9.0]], np.float32)
    scale = np.array([[2.0, 2.0], [0.5, 0.5], [1.0, 1.0]], np.float32)
    logits = np.log(np.array([0.6, 0.3, 0.1], np.float32))
    params = join_params(logits, loc, scale)
    np.testing.assert_allclose(compute(lambda p: mixture_mode(p, 2, 3), params), loc[1], atol=1e-5)
    np.testing.assert_allclose(to_np(most_probable_component_mean(params, 2, 3)), loc[0])


def test_mode_between_overlapping_components_is_not_a_component_mean():
    # Two equal unit components at -0.5 and +0.5 merge into one peak at 0
    # (a symmetric mixture with separation < 2 scales is unimodal), and with a
    # third far-away light component it stays the global mode.
    loc = np.array([[-0.5], [0.5], [20.0]], np.float32)
    scale = np.array([[1.0], [1.0], [1.0]], np.float32)
    logits = np.log(np.array([0.45, 0.45, 0.1], np.float32))
    params = join_params(logits, loc, scale)
    np.testing.assert_allclose(compute(lambda p: mixture_mode(p, 1, 3), params), [0.0], atol=1e-5)


def _mode_cycles(params, d, k, accelerate, num_iterations=4001):
    """(mode, cycles) of the mode's loop, accelerated or plain, on one backend."""
    from mdn_keras.statistics import _mode_search, _split

    family, _, logits, parts = _split(keras.ops.convert_to_tensor(params), d, k, "normal")
    mode, cycles = _mode_search(family, logits, parts, num_iterations, 1e-6, accelerate)
    return to_np(mode), int(to_np(cycles))


@pytest.mark.parametrize(
    "logits,loc,scale",
    [
        # Two components about to merge: one flat top near 0.
        ([0.5, 0.49, 0.01], [[-0.99], [0.99], [8.0]], [[1.0], [1.0], [0.5]]),
        # A flat ridge along the first axis of a 2-D mixture.
        (
            [0.5, 0.495, 0.005],
            [[-0.995, 0.0], [0.995, 0.1], [8.0, 8.0]],
            [[1.0, 2.0], [1.0, 2.0], [0.5, 0.5]],
        ),
    ],
)
def test_accelerated_mode_needs_far_fewer_cycles_than_mean_shift(logits, loc, scale):
    loc = np.asarray(loc, np.float32)
    d, k = loc.shape[1], loc.shape[0]
    params = join_params(np.log(np.asarray(logits, np.float32)), loc, np.asarray(scale, np.float32))
    params = to_np(params)[None]
    fast, fast_cycles = _mode_cycles(params, d, k, accelerate=True)
    slow, slow_cycles = _mode_cycles(params, d, k, accelerate=False)
    # Both stop by the tolerance (not the 2000-cycle budget), the accelerated
    # loop in a small fraction of the plain loop's cycles (each cycle is two
    # updates in both; about 10 against 85 and 15 against 128 here).
    assert fast_cycles <= 40 and slow_cycles < 2000, (fast_cycles, slow_cycles)
    assert 4 * fast_cycles <= slow_cycles, (fast_cycles, slow_cycles)
    logp = np_log_prob(np.repeat(params, 2, 0), np.concatenate([fast, slow]), d, k)
    assert logp[0] >= logp[1] - 1e-6
    np.testing.assert_allclose(fast, slow, atol=1e-3)


def test_mode_loop_stops_by_its_tolerance_on_random_float32_mixtures(rng):
    # In float32 a step below ~1e-7 |x| is rounding noise; the stopping rule
    # allows for it, so the loop ends well before the budget.
    params = random_params(rng, (64,), 2, 5)
    mode, cycles = _mode_cycles(params, 2, 5, accelerate=True, num_iterations=401)
    assert cycles < 100, cycles
    default = compute(lambda p: mixture_mode(p, 2, 5), params)
    np.testing.assert_allclose(
        np_log_prob(params, default, 2, 5), np_log_prob(params, mode, 2, 5), atol=1e-6
    )


@pytest.mark.parametrize("name", ["normal", "laplace", "student_t", "mvn_tril"])
def test_a_rows_mode_does_not_depend_on_the_other_rows_of_its_batch(name, rng, monkeypatch):
    # Each row stops on its own: rows that stop early are not moved further by
    # the cycles that slower rows of the same batch still need. (On PyTorch,
    # with the batch loop that drops stopped rows, used from 1,024 rows.)
    monkeypatch.setattr(mdn_keras.statistics, "COMPACT_MIN_ROWS", 2)
    d, k = 2, 3
    params = random_family_params(rng, (24,), d, k, name)
    batch = to_np(mixture_mode(params, d, k, component=name))
    alone = np.concatenate([to_np(mixture_mode(row[None], d, k, component=name)) for row in params])
    if name == "mvn_tril" or os.environ.get("MDN_KERAS_TEST_DEVICE") == "gpu":
        # Batched linear algebra (XLA's on TensorFlow) and GPU kernels may
        # round differently by batch size (flat ridges amplify it).
        np.testing.assert_allclose(batch, alone, rtol=1e-4, atol=1e-6)
    else:
        np.testing.assert_array_equal(batch, alone)


@pytest.mark.skipif(BACKEND == "jax", reason="eager JAX compiles each op for every new batch size")
@pytest.mark.parametrize("name", ["normal", "student_t"])
def test_the_compacting_mode_loop_matches_the_masked_one_and_drops_stopped_rows(
    name, rng, monkeypatch
):
    # PyTorch's loop (Python) iterates only the rows still running; run
    # eagerly on TensorFlow too, it must give the masked loop's result.
    from mdn_keras.statistics import _mode_search, _split

    d, k = 2, 3
    params = keras.ops.convert_to_tensor(random_family_params(rng, (4, 8), d, k, name))
    family, _, logits, parts = _split(params, d, k, name)
    rows_seen = []
    prepare = type(family).log_prob_fn

    def spy(self, parts):
        rows_seen.append(int(np.prod(parts[0].shape[:-3])))
        return prepare(self, parts)

    monkeypatch.setattr(type(family), "log_prob_fn", spy)
    masked, masked_cycles = _mode_search(family, logits, parts, 31, 1e-6, compact=False)
    assert rows_seen == [32]
    rows_seen.clear()
    compact, compact_cycles = _mode_search(family, logits, parts, 31, 1e-6, compact=True)
    assert to_np(compact).shape == (4, 8, d)
    if BACKEND == "torch" and os.environ.get("MDN_KERAS_TEST_DEVICE") != "gpu":
        np.testing.assert_array_equal(to_np(compact), to_np(masked))
    else:  # eager (TensorFlow's) and GPU kernels may round by batch size
        np.testing.assert_allclose(to_np(compact), to_np(masked), rtol=1e-6, atol=1e-7)
    assert int(to_np(compact_cycles)) == int(to_np(masked_cycles)) > 2
    # The whole batch (as given, then flattened), then fewer and fewer rows.
    assert rows_seen[:2] == [32, 32] and 0 < rows_seen[-1] < 32, rows_seen
    assert all(b < a for a, b in zip(rows_seen[1:-1], rows_seen[2:], strict=True)), rows_seen


@pytest.mark.parametrize("rows", [1023, 1024])
def test_mixture_mode_drops_stopped_rows_only_on_pytorch_cpu_batches_of_enough_rows(
    rows, rng, monkeypatch
):
    import mdn_keras.statistics as st

    used = []
    for name in ("_masked_loop", "_compacting_loop"):
        real = getattr(st, name)
        monkeypatch.setattr(
            st, name, lambda *a, _real=real, _name=name: used.append(_name) or _real(*a)
        )
    params = random_params(rng, (rows,), 1, 2)
    compute(lambda p: mixture_mode(p, 1, 2), params)
    compacts = BACKEND == "torch" and rows >= 1024
    if BACKEND == "torch" and os.environ.get("MDN_KERAS_TEST_DEVICE") == "gpu":
        compacts = False  # each gather would wait for the device
    assert used == ["_compacting_loop" if compacts else "_masked_loop"]


@pytest.mark.skipif(BACKEND != "torch", reason="torch backend only")
def test_on_cpu_tells_host_tensors_from_device_ones():
    import torch

    from mdn_keras.statistics import _on_cpu

    assert _on_cpu(torch.zeros(2, device="cpu"))
    assert not _on_cpu(torch.zeros(2, device="meta"))


def _mode_fd(params, v, d, k, name, h=1e-6):
    """Central differences of `sum(mode * v)` in float64, the search run to
    convergence (tolerance 0): each row's `(P,)` derivative."""
    out = np.zeros_like(params, dtype=np.float64)
    for j in range(params.shape[-1]):
        shifts = []
        for sign in (1.0, -1.0):
            p = params.astype(np.float64).copy()
            p[..., j] += sign * h
            mode = mixture_mode(p, d, k, num_iterations=301, tolerance=0.0, component=name)
            shifts.append(to_np(mode))
        out[..., j] = np.sum((shifts[0] - shifts[1]) / (2 * h) * v, axis=-1)
    return out


@pytest.fixture
def float64_on_jax():
    if BACKEND != "jax":
        yield
        return
    import jax

    enabled = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", enabled)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["normal", "student_t", "mvn_tril"])
def test_mode_derivative_is_the_fixed_points(name, dtype, rng, float64_on_jax):
    # The derivative of the mode (at a stationary point of log p) against
    # central differences of the float64 mode; never NaN.
    from backend_utils import value_and_grad

    d, k = 2, 3
    params = random_family_params(rng, (5,), d, k, name, dtype=np.float64)
    v = rng.normal(size=(5, d))

    def weighted(p):
        mode = mixture_mode(p, d, k, component=name)
        return keras.ops.sum(mode * keras.ops.convert_to_tensor(v, mode.dtype), axis=-1)

    value, grad = value_and_grad(weighted, params.astype(dtype))
    want = _mode_fd(params, v, d, k, name)
    assert np.all(np.isfinite(grad)) and np.abs(want).max() > 0.1
    tol = 1e-6 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(grad, want, rtol=tol, atol=tol * np.abs(want).max())
    plain = to_np(weighted(keras.ops.convert_to_tensor(params.astype(dtype))))
    np.testing.assert_array_equal(value, plain)  # the same bits


def test_laplace_mode_derivative_is_its_locations(rng):
    # A Laplace mixture's mode sits on a component location (D = 1; up to
    # the iteration's floor of 1e-6 scales where log-densities tie in
    # float32): it moves with that location alone.
    from backend_utils import value_and_grad

    k = 4
    params = random_family_params(rng, (6,), 1, k, "laplace")
    value, grad = value_and_grad(
        lambda p: mixture_mode(p, 1, k, component="laplace")[..., 0], params
    )
    gap = np.abs(params[:, :k] - value[:, None])
    assert np.all(gap.min(axis=1) <= 1e-5 * np.abs(value) + 1e-6)
    want = np.eye(k)[gap.argmin(axis=1)]  # d mode / d loc_k
    np.testing.assert_allclose(grad[:, :k], want, atol=1e-5)
    np.testing.assert_allclose(grad[:, k:], 0.0, atol=1e-5)


@pytest.mark.parametrize("name", ["normal", "laplace"])
def test_mode_derivative_of_half_precision_params_keeps_the_value(rng, name):
    # The derivative's updates run in float32 (Laplace's floored precision
    # 1 / (b * 1e-6 b) overflows float16): finite, and the same mode.
    from backend_utils import value_and_grad

    params = random_family_params(rng, (4,), 1, 3, name).astype("float16")
    value, grad = value_and_grad(lambda p: mixture_mode(p, 1, 3, component=name)[..., 0], params)
    np.testing.assert_array_equal(value, to_np(mixture_mode(params, 1, 3, component=name))[..., 0])
    assert np.all(np.isfinite(grad.astype(np.float32)))


@pytest.mark.skipif(BACKEND == "torch", reason="compiles with jax.jit or XLA")
@pytest.mark.parametrize(
    "d, fn",
    [
        (2, lambda p: mixture_mode(p, 2, 3)[..., 0]),
        (1, lambda p: mixture_quantile(p, 0.3, 1, 3)),
        (1, lambda p: prediction_interval(p, 0.8, 1, 3)[1]),
    ],
    ids=["mode", "quantile", "interval"],
)
def test_compiled_statistics_build_their_derivative_only_for_a_derivative(rng, monkeypatch, d, fn):
    # jax.jit / tf.function inference (model.predict) does not pay for the
    # derivative's pass (the mode's updates, the quantile's cdf).
    import mdn_keras._compile as _compile
    from backend_utils import compiled, xla_grad

    calls = []
    real = _compile.with_derivative_of

    def counted(value, fn, *inputs):
        return real(value, lambda *args: calls.append(1) or fn(*args), *inputs)

    monkeypatch.setattr(_compile, "with_derivative_of", counted)
    params = random_params(rng, (4,), d, 3)
    plain = to_np(compiled(fn)(keras.ops.convert_to_tensor(params)))
    assert calls == []
    np.testing.assert_array_equal(plain, to_np(fn(params)))
    grad = xla_grad(fn, params)
    assert calls
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.skipif(BACKEND == "torch", reason="compiles with jax.jit or XLA")
def test_mode_derivative_compiles(rng):
    from backend_utils import value_and_grad, xla_grad

    params = random_family_params(rng, (6,), 2, 3, "student_t")

    def first(p):
        return mixture_mode(p, 2, 3, component="student_t")[..., 0]

    _, eager = value_and_grad(first, params)
    assert np.all(np.isfinite(eager)) and np.any(eager != 0)
    np.testing.assert_allclose(xla_grad(first, params), eager, rtol=1e-4, atol=1e-5)


# --- cdf, quantile, interval ----------------------------------------------------


def test_until_settled_stops_one_step_after_the_state_stops_changing():
    from mdn_keras.statistics import _until_settled

    def step(_, state):
        (x,) = state  # +1 up to 5; NaN stays NaN (NaN < 5 is False)
        return (x + keras.ops.where(x < 5.0, 1.0, 0.0),)

    start = keras.ops.convert_to_tensor(np.array([0.0, 3.0, np.nan], np.float32))
    (x,), steps = _until_settled(step, (start,), 64)
    np.testing.assert_array_equal(to_np(x), [5.0, 5.0, np.nan])
    assert int(to_np(steps)) == 6  # five that change the first entry, one that confirms

    (x,), steps = _until_settled(lambda _, s: (s[0] + 1.0,), (start,), 7)  # never settles
    np.testing.assert_array_equal(to_np(x), [7.0, 10.0, np.nan])
    assert int(to_np(steps)) == 7


@pytest.mark.parametrize("name", ["normal", "student_t"])
def test_quantile_bisection_ends_where_any_number_of_further_halvings_would(name, rng):
    # The bisection stops once a halving changes no bracket; later halvings
    # would leave it as it is, so a larger budget gives the same bits.
    params = random_family_params(rng, (64,), 1, 3, name)
    q = rng.uniform(0.01, 0.99, size=(1, 64)).astype(np.float32)  # one level per row
    default = to_np(mixture_quantile(params, q, 1, 3, component=name))[0]
    longer = to_np(mixture_quantile(params, q, 1, 3, num_iterations=200, component=name))[0]
    np.testing.assert_array_equal(default, longer)
    cdf = to_np(mixture_cdf(params, default, 1, 3, component=name))
    np.testing.assert_allclose(cdf, q[0], atol=2e-6)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_cdf_matches_reference(batch, rng):
    k = 4
    params = random_params(rng, batch, 1, k)
    y = rng.normal(0, 3, size=batch).astype(np.float32)
    lead, logits, loc, scale = rows_1d(params, k)
    want = np.zeros(lead)
    for idx in np.ndindex(*lead):
        want[idx] = np_cdf_row(logits[idx], loc[idx], scale[idx], y[idx])
    got, got_trailing = compute(
        lambda p, y: (mixture_cdf(p, y, 1, k), mixture_cdf(p, y[..., None], 1, k)), params, y
    )
    assert got.shape == batch
    np.testing.assert_allclose(got, want, atol=2e-6)
    # A trailing axis of size 1 is the same target.
    np.testing.assert_allclose(got_trailing, got)


def test_cdf_limits_and_monotonicity(rng):
    params = random_params(rng, (), 1, 3)
    ys = np.linspace(-60, 60, 401).astype(np.float32)
    got = compute(lambda p, y: mixture_cdf(p, y, 1, 3), params[None], ys[:, None])
    assert got[0] == 0.0 and got[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(got) >= -1e-7)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_quantile_matches_brentq(batch, rng):
    k = 4
    params = random_params(rng, batch, 1, k)
    q = rng.uniform(0.02, 0.98, size=batch).astype(np.float32)
    # One level per row: shape (1, *batch).
    got = compute(lambda p, q: mixture_quantile(p, q, 1, k), params, q[None])[0]
    assert got.shape == batch
    lead, logits, loc, scale = rows_1d(params, k)
    for idx in np.ndindex(*lead):
        row = logits[idx], loc[idx], scale[idx]
        want = np_quantile_row(*row, float(q[idx]))
        # In q units: the float64 CDF at our answer is q to float32 CDF precision.
        assert abs(np_cdf_row(*row, got[idx]) - q[idx]) < 2e-6
        density = np.sum(special.softmax(row[0]) * stats.norm.pdf(want, row[1], row[2]))
        # In y units: the CDF error divided by the density, plus float32 spacing.
        assert abs(got[idx] - want) < 2e-6 / density + 1e-5 * (1 + abs(want))


def test_quantile_levels_of_shape_q_give_every_level_for_every_row(rng):
    k = 3
    params = random_params(rng, (4, 6), 1, k)
    qs = np.array([0.05, 0.5, 0.95], np.float32)
    got, scalar = compute(
        lambda p, q: (mixture_quantile(p, q, 1, k), mixture_quantile(p, 0.5, 1, k)), params, qs
    )
    assert got.shape == (3, 4, 6)
    assert np.all(np.diff(got, axis=0) > 0)
    np.testing.assert_allclose(got[1], scalar, atol=1e-6)
    lead, logits, loc, scale = rows_1d(params, k)
    for idx in [(0, 0), (3, 5), (2, 1)]:
        for i, qv in enumerate([0.05, 0.5, 0.95]):
            want = np_quantile_row(logits[idx], loc[idx], scale[idx], qv)
            assert abs(got[(i, *idx)] - want) < 1e-4


def test_quantile_in_the_far_tails(rng):
    k = 3
    params = random_params(rng, (10,), 1, k)
    qs = np.array([1e-5, 1 - 1e-5], np.float32)
    got = compute(lambda p, q: mixture_quantile(p, q, 1, k), params, qs)
    assert got.shape == (2, 10)
    lead, logits, loc, scale = rows_1d(params, k)
    for i in range(2):
        for j in range(10):
            row = logits[j], loc[j], scale[j]
            assert abs(np_cdf_row(*row, got[i, j]) - qs[i]) < 1e-6
            want = np_quantile_row(*row, float(qs[i]))
            density = np.sum(special.softmax(row[0]) * stats.norm.pdf(want, row[1], row[2]))
            # float32 resolves the CDF near 0 and 1 to ~6e-8 absolute (documented).
            assert abs(got[i, j] - want) < 2e-7 / density + 1e-5 * (1 + abs(want))


@pytest.mark.parametrize("component", ["normal", "laplace", "student_t", "mvn_tril"])
def test_upper_tail_quantiles_are_as_accurate_as_lower_ones(rng, component):
    # Levels 2^-23 and 1 - 2^-23 (both exact in float32). The float32 cdf near 1
    # is resolved only to its spacing 6e-8, half the tail mass, so bisecting F
    # itself would miss the upper quantile by a large fraction of its tail; on
    # -Y's lower tail both levels are found to the cdf's relative accuracy.
    k = 3
    params = random_family_params(rng, (6,), 1, k, component)
    tail = 2.0**-23
    qs = np.array([tail, 1.0 - tail], np.float32)
    got = compute(lambda p, q: mixture_quantile(p, q, 1, k, component=component), params, qs)
    for j in range(6):
        below = np_mixture_cdf_1d(params, float(got[0, j]), k, component, idx=(j,))
        above = 1.0 - np_mixture_cdf_1d(params, float(got[1, j]), k, component, idx=(j,))
        assert abs(below - tail) < 0.01 * tail
        assert abs(above - tail) < 0.01 * tail


def test_quantile_inverts_cdf(rng):
    params = random_params(rng, (10,), 1, 3)
    q = rng.uniform(0.01, 0.99, size=(1, 10)).astype(np.float32)  # one level per row
    cdf = compute(lambda p, q: mixture_cdf(p, mixture_quantile(p, q, 1, 3)[0], 1, 3), params, q)
    np.testing.assert_allclose(cdf, q[0], atol=2e-6)


@pytest.mark.parametrize("batch", [(), (4, 6)])
def test_prediction_interval_coverage(batch, rng):
    k = 3
    params = random_params(rng, batch, 1, k)
    lower, upper = compute(lambda p: prediction_interval(p, 0.9, 1, k), params)
    assert lower.shape == upper.shape == batch
    assert np.all(lower < upper)
    lead, logits, loc, scale = rows_1d(params, k)
    for idx in np.ndindex(*lead):
        row = logits[idx], loc[idx], scale[idx]
        assert np_cdf_row(*row, lower[idx]) == pytest.approx(0.05, abs=2e-6)
        assert np_cdf_row(*row, upper[idx]) == pytest.approx(0.95, abs=2e-6)
    # Monte-Carlo coverage of draws from the float64 mixture.
    n = 20000
    sample_rng = np.random.default_rng(0)
    for idx in list(np.ndindex(*lead))[:3]:
        pi = special.softmax(logits[idx])
        comp = sample_rng.choice(k, size=n, p=pi)
        draws = sample_rng.normal(loc[idx][comp], scale[idx][comp])
        inside = np.mean((draws >= lower[idx]) & (draws <= upper[idx]))
        assert abs(inside - 0.9) < 5 * math.sqrt(0.09 / n)


def test_interval_of_one_gaussian_is_mean_plus_minus_z(rng):
    params = join_params(
        np.zeros((5, 1), np.float32),
        rng.normal(size=(5, 1, 1)).astype(np.float32),
        rng.uniform(0.5, 2, size=(5, 1, 1)).astype(np.float32),
    )
    _, loc, scale = np_split(params, 1, 1)
    lower, upper = compute(lambda p: prediction_interval(p, 0.8, 1, 1), params)
    z = stats.norm.ppf(0.9)
    np.testing.assert_allclose(lower, loc[:, 0, 0] - z * scale[:, 0, 0], atol=1e-5)
    np.testing.assert_allclose(upper, loc[:, 0, 0] + z * scale[:, 0, 0], atol=1e-5)


def _np_root(params, q, k, name, i):
    """The float64 q-quantile of row i, by SciPy's root finder."""
    return optimize.brentq(
        lambda x: np_mixture_cdf_1d(params, x, k, name, idx=(i,)) - q, -1e3, 1e3, xtol=1e-14
    )


@pytest.mark.parametrize("name", ["normal", "laplace", "student_t", "mvn_tril"])
def test_quantile_derivative_is_the_implicit_functions(name, rng):
    # F(x(theta, q); theta) = q: dx/dtheta = -dF/dtheta / p(x), dx/dq = 1 / p(x),
    # against central differences of a float64 SciPy root; the value keeps its bits.
    from backend_utils import value_and_grad

    k, rows = 3, 4
    params = random_family_params(rng, (rows,), 1, k, name, dtype=np.float64)
    q = rng.uniform(0.05, 0.95, size=(1, rows))  # one level per row
    value, grad = value_and_grad(lambda p: mixture_quantile(p, q, 1, k, component=name)[0], params)
    np.testing.assert_array_equal(
        value, to_np(mixture_quantile(params, q, 1, k, component=name))[0]
    )
    eps = 1e-6
    want = np.zeros_like(params)
    for i in range(rows):
        for c in range(params.shape[-1]):
            up, down = params.copy(), params.copy()
            up[i, c] += eps
            down[i, c] -= eps
            want[i, c] = (
                _np_root(up, q[0, i], k, name, i) - _np_root(down, q[0, i], k, name, i)
            ) / (2 * eps)
    float64 = value.dtype == np.float64  # JAX without x64 computes in float32
    tol = dict(rtol=1e-5, atol=1e-7) if float64 else dict(rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(grad, want, **tol)
    # With respect to the level: 1 / p(x), p by central differences of the cdf.
    _, dq = value_and_grad(
        lambda level: mixture_quantile(params, level, 1, k, component=name)[0], q
    )
    density = [
        (
            np_mixture_cdf_1d(params, x + eps, k, name, idx=(i,))
            - np_mixture_cdf_1d(params, x - eps, k, name, idx=(i,))
        )
        / (2 * eps)
        for i, x in enumerate(_np_root(params, q[0, i], k, name, i) for i in range(rows))
    ]
    np.testing.assert_allclose(dq[0], 1.0 / np.array(density), **tol)


@pytest.mark.parametrize(
    "helper, d, fn",
    [
        ("_with_root_derivative", 1, lambda p: mixture_quantile(p, 0.7, 1, 2)),
        ("_with_fixed_point_derivative", 2, lambda p: mixture_mode(p, 2, 2)[..., 0]),
    ],
)
def test_statistics_compute_their_derivative_only_where_one_can_be_taken(
    rng, monkeypatch, helper, d, fn
):
    # The derivative's extra pass (the quantile's cdf, the mode's updates) is
    # skipped on concrete, untracked inputs; it leaves the value's bits alone.
    import mdn_keras.statistics as st
    from backend_utils import value_and_grad

    calls = []
    real = getattr(st, helper)
    monkeypatch.setattr(st, helper, lambda *a, **kw: calls.append(1) or real(*a, **kw))
    params = random_params(rng, (3,), d, 2)
    plain = to_np(fn(params))
    assert calls == []
    value, _ = value_and_grad(fn, params)
    assert calls == [1]
    np.testing.assert_array_equal(value, plain)


@pytest.mark.skipif(BACKEND == "torch", reason="compiles with jax.jit or XLA")
@pytest.mark.parametrize("name", ["normal", "student_t"])
def test_quantile_derivative_compiles(name, rng):
    # The derivative inside jax.jit / tf.function(jit_compile=True) is the eager one.
    from backend_utils import value_and_grad, xla_grad

    params = random_family_params(rng, (6,), 1, 3, name)

    def upper(p):
        return prediction_interval(p, 0.8, 1, 3, component=name)[1]

    _, eager = value_and_grad(upper, params)
    assert np.all(np.isfinite(eager)) and np.any(eager != 0)
    np.testing.assert_allclose(xla_grad(upper, params), eager, rtol=1e-4, atol=1e-5)


def test_a_nan_level_leaves_the_other_quantiles_derivatives_finite(rng):
    # Levels 0, 1 or NaN give NaN quantiles with a derivative of 0; the
    # finite quantiles of the same params keep theirs (a reverse pass used to
    # multiply that 0 by the NaN partials of the cdf at the NaN root).
    from backend_utils import value_and_grad

    params = random_params(rng, (1,), 1, 2)
    # A tensor of levels (NumPy levels outside (0, 1) raise instead).
    levels = keras.ops.convert_to_tensor(np.array([[np.nan], [0.3], [1.0]], np.float32))
    value, grad = value_and_grad(lambda p: mixture_quantile(p, levels, 1, 2)[1], params)
    _, alone = value_and_grad(lambda p: mixture_quantile(p, levels[1:2], 1, 2)[0], params)
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(grad, alone, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_quantile_of_bfloat16_params_in_a_traced_call(rng):
    # The derivative pass of traced calls names the dtype's smallest normal
    # number; NumPy alone does not know bfloat16.
    from backend_utils import compiled

    params = random_params(rng, (4,), 1, 2)
    low = keras.ops.cast(keras.ops.convert_to_tensor(params), "bfloat16")
    got = compiled(lambda p: mixture_quantile(p, 0.3, 1, 2))(low)
    want = to_np(mixture_quantile(keras.ops.cast(low, "float32"), 0.3, 1, 2))
    np.testing.assert_allclose(to_np(keras.ops.cast(got, "float32")), want, rtol=0.05, atol=0.05)


def test_interval_derivative_in_the_coverage_and_zero_in_a_gap():
    from backend_utils import value_and_grad

    # One Gaussian: the ends are loc -+ z(c) scale, d/dc = -+ scale / (2 phi(z)).
    params = join_params(np.zeros((1, 1)), np.full((1, 1, 1), 0.5), np.full((1, 1, 1), 2.0))
    coverage = np.array([0.8])
    lower, d_lower = value_and_grad(lambda c: prediction_interval(params, c, 1, 1)[0], coverage)
    _, d_upper = value_and_grad(lambda c: prediction_interval(params, c, 1, 1)[1], coverage)
    z = stats.norm.ppf(0.9)
    slope = 2.0 / (2 * stats.norm.pdf(z))
    np.testing.assert_allclose(lower, 0.5 - 2.0 * z, rtol=1e-6)
    np.testing.assert_allclose(d_lower, -slope, rtol=1e-4)
    np.testing.assert_allclose(d_upper, slope, rtol=1e-4)
    # Two equal components 100 apart: at 0, in the gap between them, the
    # density is 0 (the median is not unique); the derivative carried by a
    # root there is 0, not NaN or inf, and the value keeps its bits.
    from mdn_keras.families import get_family
    from mdn_keras.statistics import _with_root_derivative

    gap = join_params(
        np.zeros((1, 2), np.float32),
        np.array([[[-50.0], [50.0]]], np.float32),
        np.full((1, 2, 1), 0.3, np.float32),
    )
    x = keras.ops.convert_to_tensor(np.array([0.0, 1.5], np.float32))  # as for two rows
    got, d_params = value_and_grad(
        lambda p: _with_root_derivative(
            p, np.float32(0.5), x, family=get_family("normal"), num_mixtures=2
        ),
        np.repeat(gap, 2, axis=0),
    )
    np.testing.assert_array_equal(got, to_np(x))
    np.testing.assert_array_equal(d_params, np.zeros((2, gap.shape[-1]), np.float32))


# --- compiled -------------------------------------------------------------------


@pytest.mark.jax_only
def test_statistics_under_jax_jit(rng):
    import jax

    params = random_params(rng, (4, 6), 1, 3)
    q = np.float32(0.3)

    @jax.jit
    def all_stats(p, q):
        mix = mdn_keras.Mixture(p, 1, 3)
        return mix.mode(), mix.quantile(q), mix.interval(0.9), mix.variance()

    mode, quantile, (lower, upper), var = all_stats(params, q)
    eager = to_np(mixture_mode(params, 1, 3))  # JAX's op-by-op path
    np.testing.assert_allclose(
        np_log_prob(params, np.asarray(mode), 1, 3), np_log_prob(params, eager, 1, 3), atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(mode), eager, atol=1e-3)
    _, logits, loc, scale = rows_1d(params, 3)
    cdf = np.sum(
        special.softmax(logits, -1) * stats.norm.cdf(np.asarray(quantile)[..., None], loc, scale),
        axis=-1,
    )
    np.testing.assert_allclose(cdf, 0.3, atol=2e-6)
    np.testing.assert_allclose(np.asarray(var), np_moments(params, 1, 3)[1], rtol=1e-5)
    assert np.all(np.asarray(lower) < np.asarray(upper))


@pytest.mark.tensorflow_only
def test_statistics_under_tf_function(rng):
    import tensorflow as tf

    params = random_params(rng, (4, 6), 2, 3)
    mode = tf.function(lambda p: mixture_mode(p, 2, 3))(tf.constant(params)).numpy()
    eager = to_np(mixture_mode(params, 2, 3))
    # Equal up to float32 noise in the log-densities that pick the best start.
    np.testing.assert_allclose(
        np_log_prob(params, mode, 2, 3), np_log_prob(params, eager, 2, 3), atol=1e-6
    )
    np.testing.assert_allclose(mode, eager, atol=1e-3)
    params1 = random_params(rng, (5,), 1, 3)
    quantile = tf.function(lambda p: mixture_quantile(p, 0.7, 1, 3))(tf.constant(params1))
    np.testing.assert_allclose(to_np(mixture_cdf(params1, quantile.numpy(), 1, 3)), 0.7, atol=2e-6)


# --- argument errors ------------------------------------------------------------


def test_one_dimensional_functions_reject_other_output_dims(rng):
    params = random_params(rng, (3,), 2, 2)
    y = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"output_dim == 1\. Received: output_dim=2"):
        mixture_cdf(params, y, 2, 2)
    with pytest.raises(ValueError, match=r"mixture_quantile.*output_dim=2"):
        mixture_quantile(params, 0.5, 2, 2)
    with pytest.raises(ValueError, match=r"prediction_interval.*output_dim=2"):
        prediction_interval(params, 0.9, 2, 2)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, True, np.array([0.2, 1.0])])
def test_quantile_and_interval_reject_probabilities_outside_0_1(bad, rng):
    params = random_params(rng, (2,), 1, 2)
    with pytest.raises(ValueError, match=r"Expected `q` in the open interval \(0, 1\)"):
        mixture_quantile(params, bad, 1, 2)
    with pytest.raises(ValueError, match=r"Expected `coverage` in the open interval"):
        prediction_interval(params, bad, 1, 2)


def test_shape_and_option_errors(rng):
    params = random_params(rng, (3,), 1, 2)
    with pytest.raises(ValueError, match=r"y.shape=\(3, 2\)"):
        mixture_cdf(params, np.zeros((3, 2), np.float32), 1, 2)
    with pytest.raises(ValueError, match=r"params.shape=\(3, 6\)"):
        mixture_mean(params, 1, 3)
    with pytest.raises(ValueError, match=r"params.shape=\(3, 6\)"):
        mixture_mode(params, 2, 2)
    with pytest.raises(ValueError, match="num_iterations=0"):
        mixture_mode(params, 1, 2, num_iterations=0)
    with pytest.raises(ValueError, match="tolerance=-1"):
        mixture_mode(params, 1, 2, tolerance=-1.0)
    with pytest.raises(ValueError, match="num_iterations=2.5"):
        mixture_quantile(params, 0.5, 1, 2, num_iterations=2.5)
    with pytest.raises(ValueError, match="floating-point"):
        mixture_variance(np.zeros((3, 6), np.int32), 1, 2)


@pytest.mark.tensorflow_only
def test_interval_and_levels_in_a_graph_with_an_unknown_batch(rng):
    import tensorflow as tf

    params = random_params(rng, (5,), 1, 3)
    spec = [tf.TensorSpec((None, params.shape[-1]), tf.float32)]
    interval = tf.function(lambda p: prediction_interval(p, 0.9, 1, 3), input_signature=spec)
    levels = tf.function(lambda p: mixture_quantile(p, [0.1, 0.9], 1, 3), input_signature=spec)
    lower, upper = (to_np(t) for t in interval(params))
    got = to_np(levels(params))
    want_lower, want_upper = (to_np(t) for t in prediction_interval(params, 0.9, 1, 3))
    np.testing.assert_allclose(lower, want_lower, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(upper, want_upper, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, to_np(mixture_quantile(params, [0.1, 0.9], 1, 3)), atol=1e-6)
    assert got.shape == (2, 5)


def test_mode_and_loss_on_symbolic_inputs():
    # Building a functional model: Keras symbolic tensors take the plain path.
    params = keras.Input((mdn_keras.params_size(1, 3),))
    mode = mixture_mode(params, 1, 3)
    assert tuple(mode.shape) == (None, 1)
    loss = mdn_keras.mdn_nll(keras.Input((1,)), params, 1, 3)  # every backend
    assert tuple(loss.shape) == (None,)


def test_a_nan_row_does_not_stop_the_mode_search_of_the_others(rng):
    params = random_params(rng, (16,), 2, 3)
    with_nan = params.copy()
    with_nan[3, 0] = np.nan
    clean = compute(lambda p: mixture_mode(p, 2, 3), params)
    got = compute(lambda p: mixture_mode(p, 2, 3), with_nan)
    rows = [i for i in range(16) if i != 3]
    np.testing.assert_allclose(got[rows], clean[rows], rtol=1e-5, atol=1e-5)


def test_diag_mode_update_keeps_float64_and_matches_numpy(rng):
    from mdn_keras.families.base import diag_mode_update

    resp = rng.uniform(size=(4, 5, 3))
    precision = rng.uniform(0.5, 2.0, size=(4, 1, 3, 2))
    loc = rng.normal(size=(4, 1, 3, 2))
    got = diag_mode_update(*(keras.ops.convert_to_tensor(a) for a in (precision, loc, resp)))
    if keras.backend.backend() != "jax":  # JAX without jax_enable_x64 stores float32
        assert keras.backend.standardize_dtype(got.dtype) == "float64"
    weight = resp[..., None] * precision
    want = (weight * loc).sum(-2) / weight.sum(-2)
    tol = 1e-12 if keras.backend.standardize_dtype(got.dtype) == "float64" else 1e-6
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=tol, atol=tol)
