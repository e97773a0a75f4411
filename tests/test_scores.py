"""Proper scores (CRPS, energy score, PIT) against scoringrules, properscoring and SciPy."""

import keras
import numpy as np
import properscoring as ps
import pytest
import scoringrules as sr
from keras import ops
from scipy import integrate, special, stats

import mdn_keras
from backend_utils import compiled, to_numpy, value_and_grad
from mdn_keras import scores

BACKEND = keras.backend.backend()
# JAX without jax_enable_x64 stores float64 inputs as float32.
FLOAT64 = "64" in str(ops.convert_to_tensor(np.zeros(1)).dtype)
RTOL = 1e-10 if FLOAT64 else 2e-5
ATOL = 1e-12 if FLOAT64 else 2e-5


def diag_params(rng, lead, d, k, scale_range=(0.2, 1.5)):
    """Float64 `(loc, scale, logits, flat params)` for the diagonal families."""
    loc = rng.normal(0, 2, size=(*lead, k, d))
    scale = rng.uniform(*scale_range, size=(*lead, k, d))
    logits = rng.normal(0, 1, size=(*lead, k))
    flat = np.concatenate([loc.reshape(*lead, k * d), scale.reshape(*lead, k * d), logits], axis=-1)
    return loc, scale, logits, flat


def tril_params(rng, lead, d, k):
    """Float64 `(loc, scale_tril, logits, flat params)` for `mvn_tril`."""
    loc = rng.normal(0, 2, size=(*lead, k, d))
    tril = np.tril(rng.normal(0, 0.5, size=(*lead, k, d, d)))
    idx = np.arange(d)
    tril[..., idx, idx] = rng.uniform(0.3, 1.5, size=(*lead, k, d))
    logits = rng.normal(0, 1, size=(*lead, k))
    flat = to_numpy(mdn_keras.join_params(logits, loc, tril, component="mvn_tril"))
    return loc, tril, logits, np.asarray(flat, np.float64)


def np_mixture_crps_quad(cdf, w, y):
    """`int (F(z) - 1{z >= y})^2 dz` by SciPy's adaptive quadrature, float64."""

    def mix(z):
        return float(np.sum(w * cdf(z)))

    lo = integrate.quad(lambda z: mix(z) ** 2, -np.inf, y, limit=500, epsabs=1e-13)[0]
    hi = integrate.quad(lambda z: (1 - mix(z)) ** 2, y, np.inf, limit=500, epsabs=1e-13)[0]
    return lo + hi


# --- CRPS ---------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [(), (7,), (2, 3)])
def test_crps_normal_matches_scoringrules_mixnorm(lead, rng):
    d, k = 2, 3
    loc, scale, logits, params = diag_params(rng, lead, d, k)
    y = rng.normal(0, 2.5, size=(*lead, d))
    got = to_numpy(scores.crps(params, y, d, k))
    assert got.shape == (*lead, d)
    w = special.softmax(logits, axis=-1)
    want = np.stack(
        [
            sr.crps_mixnorm(y[..., j], loc[..., j], scale[..., j], w, backend="numpy")
            for j in range(d)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_crps_one_gaussian_matches_properscoring(rng):
    loc, scale, logits, params = diag_params(rng, (50,), 1, 1, scale_range=(0.01, 5.0))
    y = rng.normal(0, 3, size=(50,))
    got = to_numpy(scores.crps(params, y, 1, 1))[:, 0]
    want = ps.crps_gaussian(y, loc[:, 0, 0], scale[:, 0, 0])
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_crps_mvn_tril_is_the_crps_of_its_gaussian_marginals(rng):
    d, k = 3, 2
    loc, tril, logits, params = tril_params(rng, (6,), d, k)
    y = rng.normal(0, 2, size=(6, d))
    got = to_numpy(scores.crps(params, y, d, k, component="mvn_tril"))
    sd = np.sqrt(np.einsum("...ij,...ij->...i", tril, tril))  # sqrt(diag(L L^T))
    w = special.softmax(logits, axis=-1)
    want = np.stack(
        [sr.crps_mixnorm(y[:, j], loc[..., j], sd[..., j], w, backend="numpy") for j in range(d)],
        axis=-1,
    )
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_crps_one_laplace_matches_scoringrules(rng):
    loc, scale, logits, params = diag_params(rng, (40,), 1, 1, scale_range=(0.05, 4.0))
    y = rng.normal(0, 3, size=(40,))
    got = to_numpy(scores.crps(params, y, 1, 1, component="laplace"))[:, 0]
    want = sr.crps_laplace(y, loc[:, 0, 0], scale[:, 0, 0], backend="numpy")
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "scales",
    [
        (0.3, 1.7, 0.8),  # distinct
        (0.7, 0.7, 0.7),  # equal: the limit of the pair term
        (0.7, 0.7 * (1 + 1e-9), 0.7 * (1 - 3e-7)),  # nearly equal: no cancellation
        (0.01, 5.0, 0.5),  # far apart: nothing overflows
    ],
)
def test_crps_laplace_mixture_matches_scipy_quadrature(scales, rng):
    k = len(scales)
    loc = np.array([-1.0, 0.4, 2.5])
    scale = np.array(scales)
    logits = rng.normal(size=k)
    params = np.concatenate([loc, scale, logits])[None]
    w = special.softmax(logits)
    for y in (-4.0, -1.0, 0.4, 1.3, 9.0):
        got = to_numpy(scores.crps(params, np.array([[y]]), 1, k, component="laplace"))[0, 0]
        want = np_mixture_crps_quad(lambda z: stats.laplace.cdf(z, loc, scale), w, y)
        np.testing.assert_allclose(got, want, rtol=max(RTOL, 1e-7), atol=ATOL)


@pytest.mark.parametrize("component", ["normal", "laplace"])
def test_crps_quadrature_matches_the_closed_forms(component, rng):
    # The numerical path (the one families without closed forms take) against
    # the closed forms, over scales spread across three decades.
    n, k = 60, 4
    loc = rng.normal(0, 2, size=(n, k, 1))
    scale = np.exp(rng.uniform(np.log(0.02), np.log(4.0), size=(n, k, 1)))
    logits = rng.normal(size=(n, k))
    params = np.concatenate([loc[..., 0], scale[..., 0], logits], axis=-1)
    y = rng.normal(0, 4, size=(n, 1))
    closed = to_numpy(compiled(lambda p, t: scores.crps(p, t, 1, k, component))(params, y))
    numeric = to_numpy(
        compiled(lambda p, t: scores.crps_quadrature(p, t, 1, k, component))(params, y)
    )
    rtol = 1e-9 if FLOAT64 else 5e-5
    np.testing.assert_allclose(numeric, closed, rtol=rtol, atol=ATOL)


def test_crps_quadrature_matches_scipy_for_a_mixture_of_normals(rng):
    k = 3
    loc, scale, logits, params = diag_params(rng, (), 1, k, scale_range=(0.05, 2.0))
    w = special.softmax(logits)
    for y in (-3.0, 0.1, 4.0):
        got = to_numpy(scores.crps_quadrature(params, np.array([y]), 1, k))[0]
        want = np_mixture_crps_quad(lambda z: stats.norm.cdf(z, loc[:, 0], scale[:, 0]), w, y)
        np.testing.assert_allclose(got, want, rtol=max(RTOL, 1e-7), atol=ATOL)


def test_crps_broadcasts_targets_and_compiles(rng):
    d, k = 2, 3
    _, _, _, params = diag_params(rng, (4, 5), d, k)
    y = rng.normal(size=(1, 5, d))
    eager = to_numpy(scores.crps(params, y, d, k))
    full = to_numpy(scores.crps(params, np.broadcast_to(y, (4, 5, d)), d, k))
    np.testing.assert_allclose(eager, full, rtol=1e-6)
    fn = compiled(lambda p, t: scores.crps(p, t, d, k, component="laplace"))
    want = to_numpy(scores.crps(params, y, d, k, component="laplace"))
    np.testing.assert_allclose(to_numpy(fn(params, y)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("component", ["normal", "laplace", "mvn_tril"])
def test_crps_gradients_are_finite_and_match_finite_differences(component, rng):
    d, k = 2, 3
    if component == "mvn_tril":
        _, _, _, params = tril_params(rng, (3,), d, k)
    else:
        _, _, _, params = diag_params(rng, (3,), d, k)
        if component == "laplace":
            # Equal scales take the limit branch of the pair term.
            params[0, k * d : k * d + 2] = 0.9
    y = rng.normal(size=(3, d))

    def fn(p):
        return ops.sum(scores.crps(p, ops.convert_to_tensor(y, p.dtype), d, k, component), -1)

    value, grad = value_and_grad(fn, params)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    eps = 1e-6 if FLOAT64 else 1e-2
    fast = compiled(fn)
    for j in range(0, params.shape[-1], 2):
        step = np.zeros_like(params)
        step[:, j] = eps
        up = to_numpy(fast(ops.convert_to_tensor(params + step)))
        down = to_numpy(fast(ops.convert_to_tensor(params - step)))
        fd = (up - down) / (2 * eps)
        np.testing.assert_allclose(
            grad[:, j], fd, rtol=1e-4 if FLOAT64 else 5e-2, atol=1e-6 if FLOAT64 else 5e-3
        )


def test_crps_rejects_a_mismatched_target():
    params = np.zeros((4, 2 * 3 * 2 + 3))
    with pytest.raises(ValueError, match=r"y.shape=\(4, 3\)"):
        scores.crps(params, np.zeros((4, 3)), 2, 3)
    with pytest.raises(ValueError, match=r"params.shape=\(4, 15\)"):
        scores.crps(params, np.zeros((4, 2)), 2, 4)


# --- energy score -------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3])
def test_energy_score_from_samples_matches_scoringrules_fair(d, rng):
    samples = rng.normal(size=(5, 2, 30, d))
    y = rng.normal(size=(5, 2, d))
    got = to_numpy(scores.energy_score_from_samples(samples, y))
    want = sr.energy_score(y, samples, estimator="fair", backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-10 if FLOAT64 else 1e-5)


def test_energy_score_scores_the_draws_of_sample(rng):
    d, k, m = 2, 3, 16
    _, _, _, params = tril_params(rng, (4,), d, k)
    y = rng.normal(size=(4, d))
    got = to_numpy(scores.energy_score(params, y, d, k, "mvn_tril", num_samples=m, seed=7))
    repeated = np.repeat(params[:, None, :], m, axis=1)
    draws = mdn_keras.sample(repeated, d, k, seed=7, component="mvn_tril")
    want = sr.energy_score(y, to_numpy(draws).astype(np.float64), estimator="fair", backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("component", ["normal", "laplace"])
def test_energy_score_in_one_dimension_estimates_the_crps(component, rng):
    # ES = CRPS for D = 1; the estimator is unbiased, so the mean difference over
    # n independent rows is within a few standard errors of 0.
    n, k, m = 400, 3, 64
    _, _, _, params = diag_params(rng, (n,), 1, k)
    y = rng.normal(0, 2, size=(n, 1))
    es = to_numpy(
        compiled(lambda p, t: scores.energy_score(p, t, 1, k, component, num_samples=m, seed=3))(
            params, y
        )
    )
    exact = to_numpy(compiled(lambda p, t: scores.crps(p, t, 1, k, component))(params, y))[:, 0]
    diff = es - exact
    stderr = diff.std(ddof=1) / np.sqrt(n)
    assert abs(diff.mean()) < 4 * stderr
    assert stderr < 0.02  # the draws are not degenerate


def test_energy_score_of_student_t_estimates_its_crps(rng):
    # The Student-t family scored from draws (no cdf needed): one component,
    # D = 1, against scoringrules' closed-form CRPS of a t.
    n, m = 400, 64
    loc = rng.normal(size=n)
    scale = rng.uniform(0.5, 2.0, size=n)
    df = rng.uniform(3.0, 10.0, size=n)
    params = np.stack([loc, scale, df, np.zeros(n)], axis=-1)
    y = rng.normal(0, 2, size=(n, 1))
    es = to_numpy(
        compiled(lambda p, t: scores.energy_score(p, t, 1, 1, "student_t", num_samples=m, seed=5))(
            params, y
        )
    )
    exact = sr.crps_t(y[:, 0], df, loc, scale, backend="numpy")
    diff = es - exact
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(n)


def test_energy_score_rejects_bad_sample_counts_and_shapes(rng):
    params = np.zeros((2, 5))
    with pytest.raises(ValueError, match="num_samples"):
        scores.energy_score(params, np.zeros((2, 1)), 1, 1, num_samples=1)
    with pytest.raises(ValueError, match=r"samples.shape=\(4, 1, 2\)"):
        scores.energy_score_from_samples(np.zeros((4, 1, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"y.shape=\(4, 3\)"):
        scores.energy_score_from_samples(np.zeros((4, 5, 2)), np.zeros((4, 3)))


# --- PIT ----------------------------------------------------------------------------


@pytest.mark.parametrize("component", ["normal", "laplace"])
def test_pit_is_the_marginal_cdf(component, rng):
    d, k = 2, 3
    loc, scale, logits, params = diag_params(rng, (8,), d, k)
    y = rng.normal(0, 2, size=(8, d))
    got = to_numpy(scores.pit(params, y, d, k, component))
    dist = stats.norm if component == "normal" else stats.laplace
    w = special.softmax(logits, axis=-1)[..., None]
    want = np.sum(w * dist.cdf(y[:, None, :], loc, scale), axis=-2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_pit_of_draws_from_the_model_is_uniform(rng):
    d, k, n = 2, 3, 2000
    _, _, _, params = tril_params(rng, (1,), d, k)
    params = np.repeat(params, n, axis=0)
    y = mdn_keras.sample(params, d, k, seed=11, component="mvn_tril")
    u = to_numpy(scores.pit(params, y, d, k, "mvn_tril"))
    for j in range(d):
        assert stats.kstest(u[:, j], "uniform").pvalue > 1e-3
    # ... and a model twice too narrow is not calibrated: its PIT is U-shaped.
    narrow = params.copy()
    narrow[:, k * d : -k] *= 0.5
    u = to_numpy(scores.pit(narrow, y, d, k, "mvn_tril"))
    assert stats.kstest(u[:, 0], "uniform").pvalue < 1e-6


@pytest.mark.parametrize("df", [1.1, 1.5, 3.0, 30.0])
def test_crps_of_student_t_by_quadrature_matches_scoringrules(df, rng):
    n = 20
    loc, scale = rng.normal(size=n), rng.uniform(0.3, 2.0, size=n)
    params = np.stack([loc, scale, np.full(n, df), np.zeros(n)], axis=-1)
    y = rng.normal(0, 3, size=(n, 1))
    got = to_numpy(scores.crps(params, y, 1, 1, component="student_t"))[:, 0]
    want = sr.crps_t(y[:, 0], df, loc, scale, backend="numpy")
    # The mapped tail of z^(-2 df) converges algebraically: looser for df near 1.
    rtol = (1e-4 if df < 1.2 else 1e-9) if FLOAT64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=rtol, atol=ATOL)


def test_crps_of_a_student_t_mixture_matches_scipy_quadrature(rng):
    k, d = 3, 2
    loc = rng.normal(0, 2, size=(k, d))
    scale = rng.uniform(0.2, 1.5, size=(k, d))
    df = rng.uniform(1.5, 8.0, size=(k, d))
    logits = rng.normal(size=k)
    params = np.concatenate([loc.ravel(), scale.ravel(), df.ravel(), logits])[None]
    y = np.array([[-1.0, 2.5]])
    got = to_numpy(scores.crps(params, y, d, k, component="student_t"))[0]
    w = special.softmax(logits)
    for j in range(d):
        want = np_mixture_crps_quad(
            lambda z, j=j: stats.t.cdf(z, df[:, j], loc[:, j], scale[:, j]), w, y[0, j]
        )
        np.testing.assert_allclose(got[j], want, rtol=max(RTOL, 1e-7), atol=ATOL)
