"""Eager calls of the loops and the sampler run compiled (`mdn_keras._compile`).

On JAX and TensorFlow an eager `mixture_quantile`, `prediction_interval`,
`mixture_mode`, `sample` or `sample_from_noise` runs one cached compiled
program; on PyTorch the plain function. These tests check that the compiled
path is taken where promised (trace counters), is not retraced on a second
call, gives what the plain op-by-op function gives, and steps aside inside an
outer `jax.jit` / `tf.function` trace.
"""

import keras
import numpy as np
import pytest

import mdn_keras
from backend_utils import compiled
from mdn_keras import _compile, sampling, statistics
from mdn_keras.families import get_family

BACKEND = keras.backend.backend()
COMPILES = BACKEND in ("jax", "tensorflow")


def to_np(x):
    return keras.ops.convert_to_numpy(x)


def random_params(rng, rows, d, k, dtype="float32"):
    return np.concatenate(
        [
            rng.normal(scale=2.0, size=(rows, k * d)),
            rng.uniform(0.2, 1.5, size=(rows, k * d)),
            rng.normal(size=(rows, k)),
        ],
        axis=-1,
    ).astype(dtype)


def traces(name):
    return _compile.trace_counts[name]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_quantile_compiles_once_per_shape_and_options(rng):
    params = keras.ops.convert_to_tensor(random_params(rng, 37, 1, 3))
    before = traces("_bisect")
    a = mdn_keras.mixture_quantile(params, 0.3, 1, 3, num_iterations=61)
    b = mdn_keras.mixture_quantile(params, 0.8, 1, 3, num_iterations=61)  # a new level: no trace
    assert traces("_bisect") - before == (1 if COMPILES else 0)
    mdn_keras.mixture_quantile(params, 0.8, 1, 3, num_iterations=62)  # a new program
    assert traces("_bisect") - before == (2 if COMPILES else 0)
    assert np.all(to_np(a) < to_np(b))


@pytest.mark.parametrize("component", ["normal", "laplace", "student_t", "mvn_tril"])
def test_eager_quantile_and_interval_equal_the_plain_function(rng, component):
    family = get_family(component)
    k = 3
    keras.utils.set_random_seed(0)
    layer = mdn_keras.MDN(1, k, component=component)
    params = layer(keras.ops.convert_to_tensor(rng.normal(size=(50, 4)).astype("float32")))
    q = keras.ops.convert_to_tensor(np.float32(0.7))
    plain = statistics._bisect(
        params, q, family=family, num_mixtures=k, num_iterations=64, portable=False
    )
    eager = mdn_keras.mixture_quantile(params, 0.7, 1, k, component=component)
    np.testing.assert_allclose(to_np(eager), to_np(plain), rtol=1e-5, atol=1e-5)
    lower, upper = mdn_keras.prediction_interval(params, 0.5, 1, k, component=component)
    np.testing.assert_allclose(
        to_np(lower),
        to_np(mdn_keras.mixture_quantile(params, 0.25, 1, k, component=component)),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        to_np(upper),
        to_np(mdn_keras.mixture_quantile(params, 0.75, 1, k, component=component)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_quantile_nan_levels_stay_nan(rng):
    params = keras.ops.convert_to_tensor(random_params(rng, 4, 1, 2))
    q = keras.ops.convert_to_tensor(np.array([0.5, 0.0, 1.5, np.nan], "float32"))
    got = to_np(mdn_keras.mixture_quantile(params, q[:, None] + keras.ops.zeros((4, 4)), 1, 2))
    assert np.isfinite(got[0]).all()
    assert np.isnan(got[1:]).all()
    lower, upper = mdn_keras.prediction_interval(params, q, 1, 2)
    assert np.isnan(to_np(lower)[1:]).all() and np.isnan(to_np(upper)[1:]).all()


def test_inside_an_outer_trace_the_plain_function_runs(rng):
    params = random_params(rng, 16, 1, 3)
    eager = to_np(mdn_keras.mixture_quantile(params, 0.4, 1, 3))
    before = traces("_bisect")
    fn = compiled(lambda p: mdn_keras.mixture_quantile(p, 0.4, 1, 3))
    got = to_np(fn(keras.ops.convert_to_tensor(params)))
    assert traces("_bisect") == before  # no compiled program of its own inside the trace
    np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-5)


def test_mode_compiles_once_and_matches_a_traced_call(rng):
    params = keras.ops.convert_to_tensor(random_params(rng, 21, 2, 3))
    before = traces("_searched_mode")
    a = to_np(mdn_keras.mixture_mode(params, 2, 3, num_iterations=150))
    b = to_np(mdn_keras.mixture_mode(params, 2, 3, num_iterations=150))
    assert traces("_searched_mode") - before == (1 if COMPILES else 0)
    np.testing.assert_array_equal(a, b)
    traced = to_np(compiled(lambda p: mdn_keras.mixture_mode(p, 2, 3, num_iterations=150))(params))
    np.testing.assert_allclose(a, traced, rtol=1e-4, atol=1e-4)
    # A serialised family (a dict, unhashable) runs plainly, with the same result.
    d = to_np(
        mdn_keras.mixture_mode(params, 2, 3, num_iterations=150, component={"name": "normal"})
    )
    np.testing.assert_allclose(d, a, rtol=1e-5, atol=1e-5)


def test_mode_checks_raise_their_own_errors():
    params = np.zeros((2, 6), "float32")
    with pytest.raises(ValueError, match="tolerance"):
        mdn_keras.mixture_mode(params, 1, 2, tolerance=-1.0)
    with pytest.raises(ValueError, match="num_iterations"):
        mdn_keras.mixture_mode(params, 1, 2, num_iterations=0)
    with pytest.raises(ValueError, match="params.shape"):
        mdn_keras.mixture_mode(params, 2, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_int_seed_draws_equal_the_plain_op_by_op_draws(rng, dtype):
    if dtype == "float64" and BACKEND == "jax":
        pytest.skip("float64 needs jax_enable_x64")
    params = keras.ops.convert_to_tensor(random_params(rng, 40, 2, 3, dtype))
    family = get_family("normal")
    shape = (2, 40, sampling.noise_size(2, 3))
    uniform = sampling.random_uniform(shape, dtype, 11)
    plain = sampling._draws(
        params,
        uniform,
        0.7,
        1.3,
        output_dim=2,
        num_mixtures=3,
        family=family,
        validate=(False, False),
    )
    before = traces("_sample_draws")
    got = mdn_keras.sample(
        params, 2, 3, temperature=0.7, sigma_temperature=1.3, seed=11, sample_shape=2
    )
    assert keras.backend.standardize_dtype(got.dtype) == dtype
    np.testing.assert_allclose(to_np(got), to_np(plain), rtol=1e-6, atol=1e-6)
    # Another temperature value is an input of the same program.
    mdn_keras.sample(params, 2, 3, temperature=0.2, sigma_temperature=0.5, seed=11, sample_shape=2)
    assert traces("_sample_draws") - before == (1 if COMPILES else 0)
    from_noise = mdn_keras.sample_from_noise(
        params, uniform, 2, 3, temperature=0.7, sigma_temperature=1.3
    )
    np.testing.assert_allclose(to_np(from_noise), to_np(plain), rtol=1e-6, atol=1e-6)


def test_seed_generator_advances_and_replays():
    rng = np.random.default_rng(1)
    params = keras.ops.convert_to_tensor(random_params(rng, 30, 2, 3))
    gen = keras.random.SeedGenerator(3)
    a, b = (to_np(mdn_keras.sample(params, 2, 3, seed=gen)) for _ in range(2))
    assert not np.allclose(a, b)
    again = keras.random.SeedGenerator(3)
    np.testing.assert_array_equal(to_np(mdn_keras.sample(params, 2, 3, seed=again)), a)
    np.testing.assert_array_equal(to_np(mdn_keras.sample(params, 2, 3, seed=again)), b)


def test_tensor_temperatures_still_give_nan_where_invalid(rng):
    params = keras.ops.convert_to_tensor(random_params(rng, 3, 1, 2))
    t = keras.ops.convert_to_tensor(np.array([1.0, -1.0, np.nan], "float32"))
    got = to_np(mdn_keras.sample(params, 1, 2, temperature=t, seed=0))
    assert np.isfinite(got[0]).all() and np.isnan(got[1:]).all()
    got = to_np(mdn_keras.sample(params, 1, 2, sigma_temperature=t, seed=0))
    assert np.isfinite(got[0]).all() and np.isnan(got[1:]).all()


def test_unchosen_non_finite_components_do_not_leak(rng):
    params = random_params(rng, 5, 1, 2)
    params[:, 1] = np.inf  # the loc of component 1
    params[:, -2:] = [10.0, -10.0]  # component 0 is always chosen at temperature 0
    got = to_np(mdn_keras.sample(params, 1, 2, temperature=0.0, seed=0))
    assert np.isfinite(got).all()


def test_the_cache_is_bounded():
    assert _compile._compiled.cache_info().maxsize == _compile.CACHE_SIZE


@pytest.mark.jax_only
def test_jax_jit_of_sample_with_a_key_does_not_use_the_cache(rng):
    import jax

    params = random_params(rng, 8, 1, 2)
    before = traces("_sample_draws")
    fn = jax.jit(lambda p, key: mdn_keras.sample(p, 1, 2, seed=key))
    a, b = fn(params, jax.random.key(0)), fn(params, jax.random.key(1))
    assert traces("_sample_draws") == before
    assert not np.allclose(np.asarray(a), np.asarray(b))


@pytest.mark.tensorflow_only
def test_tf_function_of_sample_takes_the_plain_path(rng):
    import tensorflow as tf

    params = tf.constant(random_params(rng, 8, 1, 2))
    before = traces("_sample_draws")
    eager = to_np(mdn_keras.sample(params, 1, 2, seed=5))
    assert traces("_sample_draws") - before == 1
    fn = tf.function(lambda p: mdn_keras.sample(p, 1, 2, seed=5))
    np.testing.assert_allclose(to_np(fn(params)), eager, rtol=1e-6, atol=1e-6)
    assert traces("_sample_draws") - before == 1
