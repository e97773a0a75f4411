"""Every component family on the generic core, against float64 SciPy references
and TFP: layout, log-density, gradients, sampling, statistics, adapters,
saving and training."""

import math

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special, stats

import mdn_keras
from backend_utils import BACKEND, compiled, to_numpy, value_and_grad
from family_reference import (
    FAMILY_NAMES,
    np_component_logpdf,
    np_family_log_prob,
    np_family_split,
    np_log_prob_points,
    np_mixture_cdf_1d,
    np_mixture_moments,
    np_params_size,
    random_family_params,
)
from mdn_keras import special as special_ops
from mdn_keras.families import MultivariateNormalTriL, StudentT

CASES = [  # (leading axes, D, K)
    ((), 1, 1),
    ((7,), 1, 3),
    ((5,), 3, 4),
    ((2, 3), 2, 5),
]


def tfp_available():
    try:
        mdn_keras.distributions._tfp_distributions(BACKEND)
    except ImportError:
        return False
    return True


# --- layout ------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("lead,d,k", CASES)
def test_split_join_layout(rng, name, lead, d, k):
    assert mdn_keras.params_size(d, k, name) == np_params_size(name, d, k)
    params = random_family_params(rng, lead, d, k, name)
    got = mdn_keras.split_params(params, d, k, component=name)
    logits, parts = np_family_split(params, d, k, name)
    assert len(got) == 1 + len(parts)
    for g, want in zip(got, (logits, *parts), strict=True):
        np.testing.assert_array_equal(to_numpy(g), want.astype("float32"))
    rejoined = mdn_keras.join_params(*got, component=name)
    np.testing.assert_array_equal(to_numpy(rejoined), params)


def test_mvn_tril_layout_is_row_by_row():
    # D = 3, K = 1: the triangle (0,0), (1,0), (1,1), (2,0), (2,1), (2,2) -> 1..6.
    params = np.concatenate([np.zeros(3), np.arange(1.0, 7.0), [0.0]]).astype("float32")
    _, _, tril = mdn_keras.split_params(params, 3, 1, component="mvn_tril")
    want = np.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]], dtype="float32")
    np.testing.assert_array_equal(to_numpy(tril)[0], want)


def test_default_family_layout_is_unchanged(rng):
    params = random_family_params(rng, (4,), 2, 3, "normal")
    a = mdn_keras.split_params(params, 2, 3)
    b = mdn_keras.split_params(params, 2, 3, component="normal")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))
    assert mdn_keras.params_size(2, 3) == 15


def test_wrong_size_names_the_family():
    with pytest.raises(ValueError, match=r"3 \* output_dim \+ 1.*= 21 for component='student_t'"):
        mdn_keras.log_prob(np.zeros((2, 15), "float32"), np.zeros((2, 2)), 2, 3, "student_t")


def test_join_checks_parts():
    with pytest.raises(ValueError, match="Expected 4 tensors"):
        mdn_keras.join_params(np.zeros(2), np.zeros((2, 1)), component="student_t")
    with pytest.raises(ValueError, match=r"scale_tril.*\(\.\.\., K, D, D\)"):
        mdn_keras.join_params(np.zeros(2), np.zeros((2, 3)), np.zeros((2, 3)), component="mvn_tril")


def test_get_family():
    assert mdn_keras.get_family("laplace") == mdn_keras.FAMILIES["laplace"]()
    assert mdn_keras.get_family({"name": "student_t", "min_df": 2.0}) == StudentT(2.0)
    assert StudentT(2.0) != StudentT(1.0)
    assert StudentT().serialize() == "student_t"
    assert StudentT(min_df=2.5).serialize() == {"name": "student_t", "min_df": 2.5}
    with pytest.raises(ValueError, match=r"Expected `component` to be one of .*Received: comp"):
        mdn_keras.get_family("gamma")
    with pytest.raises(ValueError, match="Expected `min_df` to be a finite number > 0"):
        StudentT(min_df=0.0)
    with pytest.raises(ValueError, match="Expected `component`"):
        mdn_keras.MDN(2, 3, component="cauchy")


# --- density -----------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("lead,d,k", CASES)
def test_log_prob_matches_scipy(rng, name, lead, d, k):
    params = random_family_params(rng, lead, d, k, name)
    y = rng.normal(0, 2, size=(*lead, d)).astype("float32")
    got = to_numpy(mdn_keras.log_prob(params, y, d, k, component=name))
    assert got.shape == lead
    np.testing.assert_allclose(got, np_family_log_prob(params, y, d, k, name), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_prepared_log_prob_and_mode_update_equal_the_plain_ones(rng, name):
    # `log_prob_fn` / `mode_update_fn` (the mode search's form, with the
    # parameters' own terms computed once) give the plain methods' values,
    # here for 3 starts (x (4, 3, D)) against the parts with a start axis.
    d, k = 2, 3
    family = mdn_keras.families.get_family(name)
    params = ops.convert_to_tensor(random_family_params(rng, (4,), d, k, name))
    _, *parts = mdn_keras.split_params(params, d, k, component=name)
    parts = tuple(ops.expand_dims(p, 1) for p in parts)  # (4, 1, K, ...)
    x = ops.convert_to_tensor(rng.normal(size=(4, 3, d)).astype("float32"))
    resp = ops.softmax(ops.convert_to_tensor(rng.normal(size=(4, 3, k)).astype("float32")))
    y = ops.expand_dims(x, -2)
    want = to_numpy(family.log_prob(parts, y))
    np.testing.assert_array_equal(to_numpy(family.log_prob_fn(parts)(y)), want)
    np.testing.assert_allclose(
        want, np_log_prob_of_starts(params, x, d, k, name), rtol=1e-5, atol=1e-5
    )
    update = to_numpy(family.mode_update_fn(parts)(resp, x))
    np.testing.assert_array_equal(update, to_numpy(family.mode_update(parts, resp, x)))
    if name == "normal":  # Gaussian mean-shift: sum_k r_k P_k loc_k / sum_k r_k P_k
        loc, scale = (np.asarray(to_numpy(p), np.float64) for p in parts)
        weight = np.asarray(to_numpy(resp), np.float64)[..., None] / scale**2
        want = (weight * loc).sum(-2) / weight.sum(-2)
        np.testing.assert_allclose(update, want, rtol=1e-5, atol=1e-5)


def np_log_prob_of_starts(params, x, d, k, name):
    """`(rows, S, K)` float64 component log-densities (SciPy) of each start `x[i, s]`."""
    _, parts = np_family_split(to_numpy(params), d, k, name)
    x = np.asarray(to_numpy(x), np.float64)
    rows, starts = x.shape[:2]
    return np.array(
        [
            [
                [np_component_logpdf(name, parts, x[:, s], i, j) for j in range(k)]
                for s in range(starts)
            ]
            for i in range(rows)
        ]
    )


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_log_prob_broadcasts_candidate_points(rng, name):
    # Many candidate points (6, ...) scored against one batch of mixtures (4, ...).
    params = random_family_params(rng, (4,), 2, 3, name)
    y = rng.normal(size=(6, 4, 2)).astype("float32")
    got = to_numpy(mdn_keras.log_prob(params, y, 2, 3, component=name))
    want = np.stack([np_family_log_prob(params, y[i], 2, 3, name) for i in range(6)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_log_prob_matches_tfp(rng, name):
    if not tfp_available():
        pytest.skip("TensorFlow Probability is not installed")
    params = random_family_params(rng, (6,), 3, 4, name)
    y = rng.normal(size=(6, 3)).astype("float32")
    dist = mdn_keras.to_tfp(params, 3, 4, component=name)
    assert tuple(dist.batch_shape) == (6,) and tuple(dist.event_shape) == (3,)
    want = np.asarray(dist.log_prob(y))
    got = to_numpy(mdn_keras.log_prob(params, y, 3, 4, component=name))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.torch_only
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_torch_distribution_twin(rng, name):
    params = random_family_params(rng, (6,), 3, 4, name)
    y = rng.normal(size=(6, 3)).astype("float32")
    dist = mdn_keras.to_distribution(params, 3, 4, component=name)
    got = dist.log_prob(ops.convert_to_tensor(y))
    want = np_family_log_prob(params, y, 3, 4, name)
    np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5, atol=1e-5)


def test_mvn_tril_with_d1_equals_normal(rng):
    params = random_family_params(rng, (8,), 1, 3, "normal")
    y = rng.normal(size=(8, 1)).astype("float32")
    a = to_numpy(mdn_keras.log_prob(params, y, 1, 3))
    b = to_numpy(mdn_keras.log_prob(params, y, 1, 3, component="mvn_tril"))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_sketch_rnn_parameters_convert(rng):
    # (s_x, s_y, rho) -> L = [[s_x, 0], [rho s_y, s_y sqrt(1 - rho^2)]] (docs).
    sx, sy, rho = 0.7, 1.3, -0.6
    tril = [sx, rho * sy, sy * math.sqrt(1 - rho**2)]
    params = np.array([0.5, -1.0, *tril, 0.0], dtype="float32")
    y = np.array([0.1, 0.3], dtype="float32")
    cov = [[sx**2, rho * sx * sy], [rho * sx * sy, sy**2]]
    want = stats.multivariate_normal([0.5, -1.0], cov).logpdf(y)
    got = float(to_numpy(mdn_keras.log_prob(params, y, 2, 1, component="mvn_tril")))
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_log_prob_compiles(rng, name):
    params = random_family_params(rng, (5,), 2, 3, name)
    y = rng.normal(size=(5, 2)).astype("float32")
    fn = compiled(lambda p, t: mdn_keras.log_prob(p, t, 2, 3, component=name))
    np.testing.assert_allclose(
        to_numpy(fn(params, y)), np_family_log_prob(params, y, 2, 3, name), rtol=1e-5, atol=1e-5
    )


# --- the layer's constraints and gradients -------------------------------------


def _identity_head(name, d, k, **kwargs):
    """An MDN whose raw output equals its input (identity kernel, zero bias)."""
    size = mdn_keras.params_size(d, k, name)
    layer = mdn_keras.MDN(d, k, component=name, kernel_initializer="identity", **kwargs)
    layer.build((None, size))
    return layer, size


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_layer_constraints(rng, name):
    d, k = 3, 2
    layer, size = _identity_head(name, d, k, min_scale=1e-3)
    raw = rng.normal(0, 5, size=(16, size)).astype("float32")
    params = to_numpy(layer(raw))
    assert params.shape == (16, size)
    logits, parts = np_family_split(params, d, k, name)
    raw_logits, raw_parts = np_family_split(raw, d, k, name)
    np.testing.assert_allclose(parts[0], raw_parts[0], rtol=1e-6)  # loc is free
    np.testing.assert_allclose(logits, raw_logits, rtol=1e-6)
    if name == "mvn_tril":
        diag = np.diagonal(parts[1], axis1=-2, axis2=-1)
        assert np.all(diag >= 1e-3)
        rows, cols = np.tril_indices(d, -1)
        np.testing.assert_allclose(parts[1][..., rows, cols], raw_parts[1][..., rows, cols])
        assert np.all(np.triu(parts[1], 1) == 0)
    else:
        assert np.all(parts[1] >= 1e-3)
    if name == "student_t":
        assert np.all(parts[2] >= 1.0)
        np.testing.assert_allclose(parts[2], np.logaddexp(0, raw_parts[2]) + 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("extreme", [-1e4, -30.0, 30.0, 1e4])
def test_loss_and_gradients_finite_at_extreme_raw_outputs(rng, name, extreme):
    d, k = 2, 3
    layer, size = _identity_head(name, d, k)
    raw = np.full((4, size), extreme, dtype="float32")
    raw[:, -k:] = rng.normal(size=(4, k))
    y = rng.normal(0, 3, size=(4, d)).astype("float32")
    value, grad = value_and_grad(lambda x: mdn_keras.mdn_nll(y, layer(x), d, k, name), raw)
    assert np.all(np.isfinite(value)), value
    assert np.all(np.isfinite(grad)), grad


# --- sampling ------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("temperature,sigma_temperature", [(1.0, 1.0), (0.5, 0.3)])
def test_samples_pass_ks_test_1d(rng, name, temperature, sigma_temperature):
    k, n = 3, 4000
    row = random_family_params(rng, (), 1, k, name, df_range=(2.5, 6.0))
    params = np.broadcast_to(row, (n, row.shape[-1]))
    draws = to_numpy(
        mdn_keras.sample(
            params,
            1,
            k,
            temperature=temperature,
            sigma_temperature=sigma_temperature,
            seed=7,
            component=name,
        )
    )
    assert draws.shape == (n, 1)
    # The tempered mixture: logits / T, covariance * sigma_temperature.
    logits, parts = np_family_split(row, 1, k, name)
    scale_factor = math.sqrt(sigma_temperature)
    if name == "mvn_tril":
        parts = (parts[0], parts[1] * scale_factor)
    else:
        parts = (parts[0], parts[1] * scale_factor, *parts[2:])
    tempered = np.concatenate(
        [parts[0].reshape(-1)] + [p.reshape(-1) for p in parts[1:]] + [logits / temperature]
    ).astype("float64")
    pvalue = stats.kstest(draws[:, 0], lambda x: np_mixture_cdf_1d(tempered, x, k, name)).pvalue
    assert pvalue > 1e-3, pvalue


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_sample_moments_2d(rng, name):
    d, k, n = 2, 2, 40000
    row = random_family_params(rng, (), d, k, name, df_range=(6.0, 9.0))
    params = np.broadcast_to(row, (n, row.shape[-1]))
    draws = to_numpy(mdn_keras.sample(params, d, k, seed=3, component=name)).astype("float64")
    mean, cov = np_mixture_moments(row, d, k, name)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(0) - mean) < 6 * sd / math.sqrt(n)), (draws.mean(0), mean)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.08 * sd.max() ** 2, rtol=0.08)
    corr = np.corrcoef(draws.T)[0, 1]
    assert corr == pytest.approx(cov[0, 1] / (sd[0] * sd[1]), abs=0.03)


def test_mvn_tril_samples_are_correlated():
    # One component with correlation 0.9: the draws must show it.
    tril = [1.0, 0.9, math.sqrt(1 - 0.81)]
    params = np.tile(np.array([0.0, 0.0, *tril, 0.0], dtype="float32"), (20000, 1))
    draws = to_numpy(mdn_keras.sample(params, 2, 1, seed=1, component="mvn_tril"))
    assert np.corrcoef(draws.T)[0, 1] == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_sigma_temperature_zero_gives_component_location(rng, name):
    params = random_family_params(rng, (6,), 2, 3, name)
    draws = to_numpy(
        mdn_keras.sample(params, 2, 3, temperature=0.0, sigma_temperature=0.0, component=name)
    )
    want = to_numpy(mdn_keras.most_probable_component_mean(params, 2, 3, component=name))
    np.testing.assert_allclose(draws, want, rtol=1e-6)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_sampling_compiles_and_replays(rng, name):
    params = random_family_params(rng, (5,), 2, 3, name)
    fn = compiled(lambda p: mdn_keras.sample(p, 2, 3, seed=11, component=name))
    a, b = to_numpy(fn(params)), to_numpy(fn(params))
    assert a.shape == (5, 2) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)


# --- statistics ----------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_mean_variance_covariance(rng, name):
    d, k = 3, 4
    params = random_family_params(rng, (2, 5), d, k, name, df_range=(2.5, 8.0))
    mean, cov = np_mixture_moments(params, d, k, name)
    mix = mdn_keras.Mixture(params, d, k, component=name)
    np.testing.assert_allclose(to_numpy(mix.mean()), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(mix.variance()), np.diagonal(cov, axis1=-2, axis2=-1), rtol=1e-5, atol=1e-5
    )
    got_cov = to_numpy(mix.covariance())
    assert got_cov.shape == (2, 5, d, d)
    np.testing.assert_allclose(got_cov, cov, rtol=1e-5, atol=1e-5)


def test_student_t_undefined_moments_follow_tfp():
    # df = 0.8 (no mean), 1.5 (no variance), 4 (both finite), one component each.
    def params(df):
        return np.array([0.3, 2.0, df, 0.0], dtype="float32")

    stacked = np.stack([params(0.8), params(1.5), params(4.0)])
    mean = to_numpy(mdn_keras.mixture_mean(stacked, 1, 1, "student_t"))[:, 0]
    var = to_numpy(mdn_keras.mixture_variance(stacked, 1, 1, "student_t"))[:, 0]
    assert math.isnan(mean[0]) and mean[1] == pytest.approx(0.3) and mean[2] == pytest.approx(0.3)
    assert math.isnan(var[0]) and var[1] == math.inf
    assert var[2] == pytest.approx(4.0 * 4.0 / 2.0, rel=1e-6)
    if tfp_available():
        dist = mdn_keras.to_tfp(stacked, 1, 1, component="student_t")
        tfp_mean = np.asarray(dist.components_distribution.mean())[:, 0, 0]
        np.testing.assert_array_equal(np.isnan(tfp_mean), np.isnan(mean))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_cdf_quantile_interval_1d(rng, name):
    k = 3
    params = random_family_params(rng, (6,), 1, k, name)
    y = rng.normal(0, 2, size=(6,)).astype("float32")
    got = to_numpy(mdn_keras.mixture_cdf(params, y, 1, k, component=name))
    want = [np_mixture_cdf_1d(params, y[i], k, name, (i,)) for i in range(6)]
    np.testing.assert_allclose(got, want, atol=2e-6)
    for q in (0.05, 0.5, 0.9):
        x = to_numpy(mdn_keras.mixture_quantile(params, q, 1, k, component=name))
        levels = [np_mixture_cdf_1d(params, x[i], k, name, (i,)) for i in range(6)]
        np.testing.assert_allclose(levels, q, atol=5e-6)
    lower, upper = mdn_keras.prediction_interval(params, 0.8, 1, k, component=name)
    mass = [
        np_mixture_cdf_1d(params, to_numpy(upper)[i], k, name, (i,))
        - np_mixture_cdf_1d(params, to_numpy(lower)[i], k, name, (i,))
        for i in range(6)
    ]
    np.testing.assert_allclose(mass, 0.8, atol=1e-5)


def test_laplace_quantile_far_tail():
    # F(x) = exp((x - m) / b) / 2 below m: the 1e-30 quantile is m + b log(2e-30).
    params = np.array([1.0, 0.5, 0.0], dtype="float32")
    got = float(to_numpy(mdn_keras.mixture_quantile(params, 1e-30, 1, 1, component="laplace")))
    assert got == pytest.approx(1.0 + 0.5 * math.log(2e-30), rel=1e-5)


@pytest.mark.parametrize("df", [0.3, 0.5, 1.0, 2.0, 5.0, 30.0, 100.0, 1e3, 1e4, 1e6])
def test_student_t_cdf_matches_scipy(df):
    t = np.concatenate([-np.geomspace(1e-3, 1e4, 200), [0.0], np.geomspace(1e-3, 1e4, 200)])
    got = to_numpy(
        special_ops.student_t_cdf(
            ops.convert_to_tensor(t.astype("float32")),
            ops.convert_to_tensor(np.full(t.shape, df, "float32")),
        )
    )
    np.testing.assert_allclose(got, stats.t.cdf(t, df), atol=2e-6, rtol=0)


@pytest.mark.parametrize("df,q", [(1.0, 1e-6), (0.5, 1e-4), (3.0, 0.999), (50.0, 0.3)])
def test_student_t_quantile_in_the_tails(df, q):
    params = np.array([0.5, 2.0, df, 0.0], dtype="float32")
    got = float(to_numpy(mdn_keras.mixture_quantile(params, q, 1, 1, component="student_t")))
    want = stats.t.ppf(q, df, 0.5, 2.0)
    assert got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_mode_1d_matches_grid_search(rng, name):
    k = 3
    params = random_family_params(rng, (5,), 1, k, name)
    got = to_numpy(mdn_keras.mixture_mode(params, 1, k, component=name))[:, 0]
    grid = np.linspace(-12, 12, 240001)
    for i in range(5):
        density = np_log_prob_points(params[i], grid, 1, k, name)
        best = density.max()
        at_got = np_log_prob_points(params[i], [got[i]], 1, k, name)[0]
        # The found mode is as high as the best grid point (to float32 accuracy).
        assert at_got >= best - 1e-4, (i, got[i], grid[density.argmax()])


@pytest.mark.parametrize("name", ("normal", "student_t", "mvn_tril"))
def test_mode_2d_is_a_stationary_point_above_every_location(rng, name):
    d, k = 2, 3
    params = random_family_params(rng, (4,), d, k, name, df_range=(2.0, 6.0))
    mode = to_numpy(mdn_keras.mixture_mode(params, d, k, component=name)).astype("float64")
    _, parts = np_family_split(params, d, k, name)
    for i in range(4):

        def f(y, row=params[i]):
            return np_family_log_prob(row, y, d, k, name)

        h = 1e-4
        grad = [(f(mode[i] + h * e) - f(mode[i] - h * e)) / (2 * h) for e in np.eye(d)]
        assert np.max(np.abs(grad)) < 2e-2, grad
        assert f(mode[i]) >= max(f(parts[0][i][j]) for j in range(k)) - 1e-5


# Mixtures whose mode the plain fixed-point iteration reaches only slowly: two
# components about to merge into one flat peak (1-D and a 2-D ridge along the
# line joining them) and a lopsided pair near the cusp where a second mode is
# born, each with a far light third component. Unequal weights, so the global
# mode is unique.
_HARD_MODE_CASES = {  # label -> (weights, loc, diagonal scale)
    "merging_1d": ([0.5, 0.49, 0.01], [[-0.99], [0.99], [8.0]], [[1.0], [1.0], [0.5]]),
    "near_cusp_1d": ([0.56, 0.43, 0.01], [[-1.05], [1.05], [8.0]], [[1.0], [1.1], [0.5]]),
    "ridge_2d": (
        [0.5, 0.48, 0.02],
        [[-0.99, 0.0], [0.99, 0.1], [6.0, 6.0]],
        [[1.0, 2.0], [1.0, 2.0], [0.5, 0.5]],
    ),
}


def _hard_mode_params(name, label):
    weights, loc, scale = (np.asarray(v, np.float64) for v in _HARD_MODE_CASES[label])
    parts = [loc, scale]
    if name == "student_t":
        parts.append(np.full_like(loc, 5.0))
    elif name == "mvn_tril":
        # The same marginal spreads, correlated: scale_tril rows (s0, 0), (0.6 s1, 0.8 s1).
        tril = np.zeros((*loc.shape, loc.shape[-1]))
        tril[:, 0, 0] = scale[:, 0]
        if loc.shape[-1] == 2:
            tril[:, 1, 0], tril[:, 1, 1] = 0.6 * scale[:, 1], 0.8 * scale[:, 1]
        parts[1] = tril
    return to_numpy(mdn_keras.join_params(np.log(weights), *parts, component=name))


def _reference_mode(row, d, k, name):
    """Float64 `(argmax, max)` of log p: a dense grid refined by Brent (D = 1),
    Nelder-Mead from every location and their mean (D = 2)."""
    from scipy import optimize

    if d == 1:
        grid = np.linspace(-12.0, 12.0, 240001)
        density = np_log_prob_points(row, grid, 1, k, name)
        centre = grid[density.argmax()]
        if name == "laplace":  # a kink at the mode: the grid holds the locations exactly
            return np.array([centre]), density.max()
        res = optimize.minimize_scalar(
            lambda y: -np_log_prob_points(row, [y], 1, k, name)[0],
            bracket=(centre - 1e-4, centre, centre + 1e-4),
            tol=1e-12,
        )
        return np.array([res.x]), -res.fun
    loc = np_family_split(row, d, k, name)[1][0]
    best = None
    for start in [*loc, loc.mean(0)]:
        res = optimize.minimize(
            lambda y: -np_log_prob_points(row, y[None], d, k, name)[0],
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.x, -best.fun


@pytest.mark.parametrize("label", sorted(_HARD_MODE_CASES))
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_mode_of_hard_mixtures_matches_a_float64_optimiser(name, label):
    d, k = len(_HARD_MODE_CASES[label][1][0]), 3
    if name == "laplace" and d > 1:
        pytest.skip("the 'laplace' mode is exact for D == 1 only (see mixture_mode)")
    row = _hard_mode_params(name, label)
    want, want_log_p = _reference_mode(row, d, k, name)
    got = to_numpy(mdn_keras.mixture_mode(row, d, k, component=name))
    # float64 where the backend computes in float64 (JAX without x64: float32).
    exact = got.dtype == np.float64
    got_log_p = np_log_prob_points(row, got[None], d, k, name)[0]
    assert got_log_p >= want_log_p - (1e-10 if exact else 2e-6), (got, want)
    # On these flat tops log p moves by ~1e-11 over ~1e-5; the point is still pinned.
    np.testing.assert_allclose(got, want, atol=1e-4 if exact else 1e-3)


# --- models ----------------------------------------------------------------------


def _data(rng, n=256):
    x = rng.uniform(-1, 1, size=(n, 1)).astype("float32")
    y = np.concatenate([np.sin(3 * x), x + 0.3 * rng.standard_t(3, size=(n, 1))], -1)
    return x, y.astype("float32")


def _model(name, d=2, k=3):
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(16, activation="tanh"),
            mdn_keras.MDN(d, k, component=name),
        ]
    )


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_fit_lowers_the_loss(rng, name):
    keras.utils.set_random_seed(0)
    x, y = _data(rng)
    model = _model(name)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=model.layers[-1].get_loss())
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before - 0.2, (before, after)


@pytest.mark.parametrize(
    "component", ["laplace", "mvn_tril", StudentT(min_df=2.0), MultivariateNormalTriL()]
)
def test_save_and_reload(tmp_path, rng, component):
    x, y = _data(rng, 64)
    model = _model(component)
    loss = mdn_keras.MDNLoss(2, 3, component=component)
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.layers[-1].component == mdn_keras.get_family(component)
    assert loaded.loss.component == mdn_keras.get_family(component)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_layer_config_round_trip():
    layer = mdn_keras.MDN(2, 3, component=StudentT(min_df=3.0))
    config = layer.get_config()
    assert config["component"] == {"name": "student_t", "min_df": 3.0}
    clone = mdn_keras.MDN.from_config(config)
    assert clone.component == StudentT(3.0) and clone.params_size == 21
    assert mdn_keras.MDN(2, 3).get_config()["component"] == "normal"


# --- special functions -------------------------------------------------------------


def test_lgamma_matches_scipy():
    x = np.concatenate([np.geomspace(1e-3, 1.0, 50), np.geomspace(1.0, 1e6, 80)])
    got = to_numpy(special_ops.lgamma(ops.convert_to_tensor(x.astype("float32"))))
    want = special.gammaln(x)
    # float32: relative to the size of the terms the result is computed from.
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=3e-6)


def test_log_gamma_half_ratio_matches_scipy():
    a = np.geomspace(1e-3, 1e7, 200)
    got = to_numpy(special_ops.log_gamma_half_ratio(ops.convert_to_tensor(a.astype("float32"))))
    want = special.gammaln(a + 0.5) - special.gammaln(a)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
