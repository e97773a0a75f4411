"""mdn_keras.sample: distribution, temperature conventions, seeds, compilation."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special, stats

import mdn_keras
from backend_utils import compiled, to_numpy
from reference import random_params

N = 20000


def mixture_1d(logits, loc, scale):
    return np.concatenate([loc, scale, logits]).astype("float32")


def test_1d_mixture_passes_ks_test():
    logits, loc, scale = (
        np.log([0.5, 0.3, 0.2]),
        np.array([-2.0, 0.5, 3.0]),
        np.array([0.5, 0.3, 1.0]),
    )
    params = np.tile(mixture_1d(logits, loc, scale), (N, 1))
    draws = to_numpy(mdn_keras.sample(params, 1, 3, seed=7))[:, 0].astype("float64")
    probs = special.softmax(logits)

    def cdf(x):
        return np.sum(probs * stats.norm.cdf((np.asarray(x)[..., None] - loc) / scale), -1)

    result = stats.kstest(draws, cdf)
    assert result.pvalue > 1e-3, result
    # A wrong sampler (e.g. uniform component choice) is rejected by the same test.
    wrong = np.where(np.arange(N) % 3 == 0, draws, draws + 0.3)
    assert stats.kstest(wrong, cdf).pvalue < 1e-6


def test_2d_mixture_moments():
    probs = np.array([0.6, 0.4])
    loc = np.array([[1.0, -1.0], [-2.0, 3.0]])
    scale = np.array([[0.5, 1.0], [1.5, 0.2]])
    params = np.concatenate([loc.ravel(), scale.ravel(), np.log(probs)]).astype("float32")
    draws = to_numpy(mdn_keras.sample(np.tile(params, (N, 1)), 2, 2, seed=3)).astype("float64")
    mean = probs @ loc
    second = np.einsum("k,kd,ke->de", probs, loc, loc) + np.diag(probs @ scale**2)
    cov = second - np.outer(mean, mean)
    se = np.sqrt(np.diag(cov) / N)
    np.testing.assert_allclose(draws.mean(0), mean, atol=5 * se.max())
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("lead", [(), (6,), (3, 4), (2, 3, 4)])
def test_shapes_for_any_leading_axes(rng, lead):
    params = random_params(rng, lead, 3, 2)
    assert tuple(mdn_keras.sample(params, 3, 2, seed=0).shape) == (*lead, 3)


def test_zero_temperatures_return_most_probable_mean(rng):
    params = random_params(rng, (50,), 2, 4)
    logits, loc, _ = (to_numpy(t) for t in mdn_keras.split_params(params, 2, 4))
    best = loc[np.arange(50), np.argmax(logits, -1)]
    got = to_numpy(mdn_keras.sample(params, 2, 4, temperature=0.0, sigma_temperature=0.0, seed=1))
    np.testing.assert_array_equal(got, best)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_temperature_divides_the_logits(temperature):
    logits = np.array([1.0, 0.0, -1.0])
    loc = np.array([0.0, 100.0, 200.0])  # far apart: the component is read off the sample
    params = np.tile(mixture_1d(logits, loc, np.full(3, 1e-3)), (N, 1))
    draws = to_numpy(mdn_keras.sample(params, 1, 3, temperature=temperature, seed=11))[:, 0]
    freq = np.bincount(np.rint(draws / 100).astype(int), minlength=3) / N
    want = special.softmax(logits / temperature)
    chi2 = stats.chisquare(freq * N, want * N)
    assert chi2.pvalue > 1e-3, (freq, want)


@pytest.mark.parametrize("sigma_temperature", [0.25, 1.0, 4.0])
def test_sigma_temperature_multiplies_the_variance(sigma_temperature):
    params = np.tile(mixture_1d(np.zeros(1), np.array([2.0]), np.array([0.5])), (N, 1))
    draws = to_numpy(mdn_keras.sample(params, 1, 1, sigma_temperature=sigma_temperature, seed=5))[
        :, 0
    ]
    want_var = 0.25 * sigma_temperature
    assert draws.var() == pytest.approx(want_var, rel=0.05)
    assert draws.mean() == pytest.approx(2.0, abs=5 * np.sqrt(want_var / N))


def test_int_seed_is_reproducible_and_generator_advances(rng):
    params = random_params(rng, (64,), 2, 3)
    a = to_numpy(mdn_keras.sample(params, 2, 3, seed=42))
    b = to_numpy(mdn_keras.sample(params, 2, 3, seed=42))
    c = to_numpy(mdn_keras.sample(params, 2, 3, seed=43))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    gen = keras.random.SeedGenerator(42)
    d = to_numpy(mdn_keras.sample(params, 2, 3, seed=gen))
    e = to_numpy(mdn_keras.sample(params, 2, 3, seed=gen))
    assert not np.allclose(d, e)
    gen2 = keras.random.SeedGenerator(42)
    np.testing.assert_array_equal(d, to_numpy(mdn_keras.sample(params, 2, 3, seed=gen2)))


def test_component_choice_and_noise_are_independent():
    # With one int seed, the Gumbel noise and the Gaussian noise must not be
    # the same stream: the residuals must not correlate with the component.
    params = np.tile(mixture_1d(np.zeros(2), np.array([-50.0, 50.0]), np.ones(2)), (N, 1))
    draws = to_numpy(mdn_keras.sample(params, 1, 2, seed=9))[:, 0]
    comp = (draws > 0).astype(float)
    resid = draws - np.where(comp > 0, 50.0, -50.0)
    assert abs(np.corrcoef(comp, resid)[0, 1]) < 0.05
    assert abs(comp.mean() - 0.5) < 0.02


def test_sample_compiles(rng):
    params = ops.convert_to_tensor(random_params(rng, (16,), 2, 3))
    fn = compiled(lambda p: mdn_keras.sample(p, 2, 3, temperature=0.7, seed=3))
    out = to_numpy(fn(params))
    assert out.shape == (16, 2) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, to_numpy(fn(params)))


@pytest.mark.jax_only
def test_sample_under_jax_jit_with_tensor_temperature(rng):
    import jax

    params = random_params(rng, (16,), 1, 2)
    fn = jax.jit(lambda p, t: mdn_keras.sample(p, 1, 2, temperature=t, sigma_temperature=t, seed=0))
    out = np.asarray(fn(params, 0.0))
    logits, loc, _ = (to_numpy(t) for t in mdn_keras.split_params(params, 1, 2))
    np.testing.assert_allclose(out, loc[np.arange(16), np.argmax(logits, -1)])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": -1.0}, r"`temperature`.*>= 0. Received: temperature=-1.0"),
        ({"sigma_temperature": float("nan")}, r"Received: sigma_temperature=nan"),
        ({"seed": "abc"}, r"Received: seed='abc' of type str"),
    ],
)
def test_bad_arguments_raise(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.sample(random_params(rng, (2,), 1, 2), 1, 2, **kwargs)


def test_wrong_params_size_raises():
    with pytest.raises(ValueError, match=r"Received: params.shape=\(4, 7\)"):
        mdn_keras.sample(np.zeros((4, 7), "float32"), 1, 2)
