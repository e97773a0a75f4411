"""Issue 11: many draws per row, every family exact in distribution (KS tests at
significance 1e-3 with fixed seeds), noise-driven draws, per-row temperatures,
and seeds eager and compiled on each backend."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special, stats

import mdn_keras
from backend_utils import to_numpy
from reference import random_params

N = 20000
ALPHA = 1e-3  # KS significance: a correct sampler fails one run in a thousand


def family_params(component):
    """One row of a 1-D, 2-component mixture of `component` and its exact cdf (SciPy)."""
    logits = np.log([0.3, 0.7])
    loc = np.array([-2.0, 1.5])
    scale = np.array([0.5, 1.2])
    probs = special.softmax(logits)
    if component == "student_t":
        df = np.array([2.5, 7.0])
        flat = np.concatenate([loc, scale, df, logits])
        comps = [stats.t(df[k], loc[k], scale[k]) for k in range(2)]
    elif component == "laplace":
        flat = np.concatenate([loc, scale, logits])
        comps = [stats.laplace(loc[k], scale[k]) for k in range(2)]
    else:  # normal; mvn_tril with D = 1 stores the same (loc, L = scale) layout
        flat = np.concatenate([loc, scale, logits])
        comps = [stats.norm(loc[k], scale[k]) for k in range(2)]

    def cdf(x):
        return sum(probs[k] * comps[k].cdf(x) for k in range(2))

    return flat.astype("float32"), cdf


FAMILIES = ["normal", "laplace", "student_t", "mvn_tril"]


@pytest.mark.parametrize("component", FAMILIES)
def test_sample_shape_draws_pass_ks_test_for_every_family(component):
    params, cdf = family_params(component)
    draws = to_numpy(mdn_keras.sample(params, 1, 2, component=component, sample_shape=N, seed=4))
    assert draws.shape == (N, 1)
    assert stats.kstest(draws[:, 0].astype("float64"), cdf).pvalue > ALPHA
    # The same test rejects draws from a shifted mixture.
    assert stats.kstest(draws[:, 0] + 0.1, cdf).pvalue < ALPHA


@pytest.mark.parametrize("component", FAMILIES)
def test_sample_from_noise_is_exact_for_every_family(component):
    params, cdf = family_params(component)
    size = mdn_keras.noise_size(1, 2, component)
    assert size == 2 + 2 * 1
    uniform = np.random.default_rng(8).random((N, size)).astype("float32")
    draws = to_numpy(mdn_keras.sample_from_noise(params, uniform, 1, 2, component=component))
    assert draws.shape == (N, 1)
    assert stats.kstest(draws[:, 0].astype("float64"), cdf).pvalue > ALPHA
    # A deterministic function of the noise: same noise, same draws.
    again = mdn_keras.sample_from_noise(params, uniform, 1, 2, component=component)
    np.testing.assert_array_equal(draws, to_numpy(again))


@pytest.mark.parametrize("sample_shape", [(), 3, (3,), (2, 4)])
@pytest.mark.parametrize("component", FAMILIES)
def test_sample_shape_comes_first(rng, component, sample_shape):
    d, k = 2, 3
    params = _valid_params(rng, (5, 6), d, k, component)
    out = mdn_keras.sample(params, d, k, component=component, sample_shape=sample_shape, seed=1)
    lead = (sample_shape,) if isinstance(sample_shape, int) else sample_shape
    assert tuple(out.shape) == (*lead, 5, 6, d)
    assert np.all(np.isfinite(to_numpy(out)))
    mixture = mdn_keras.Mixture(params, d, k, component=component)
    assert tuple(mixture.sample(sample_shape, seed=1).shape) == (*lead, 5, 6, d)


def _valid_params(rng, lead, d, k, component):
    """Valid flat params for any family, through the family's own layout."""
    family = mdn_keras.get_family(component)
    logits = rng.normal(size=(*lead, k))
    loc = rng.normal(0, 2, size=(*lead, k, d))
    if component == "mvn_tril":
        tril = np.tril(rng.normal(0, 0.3, size=(*lead, k, d, d)), -1)
        tril = tril + np.eye(d) * rng.uniform(0.3, 1.0, size=(*lead, k, d, 1))
        parts = (loc, tril)
    else:
        parts = (loc, rng.uniform(0.3, 1.2, size=(*lead, k, d)))
        if component == "student_t":
            parts = (*parts, rng.uniform(2.0, 6.0, size=(*lead, k, d)))
    parts = tuple(ops.convert_to_tensor(p.astype("float32")) for p in parts)
    return mdn_keras.join_params(
        ops.convert_to_tensor(logits.astype("float32")), *parts, component=family
    )


def test_sample_shape_draws_are_independent_across_samples_and_rows():
    params, _ = family_params("normal")
    draws = to_numpy(mdn_keras.sample(np.tile(params, (2, 1)), 1, 2, sample_shape=N, seed=3))
    assert draws.shape == (N, 2, 1)
    assert abs(np.corrcoef(draws[:, 0, 0], draws[:, 1, 0])[0, 1]) < 0.03
    assert abs(np.corrcoef(draws[1:, 0, 0], draws[:-1, 0, 0])[0, 1]) < 0.03


def test_per_row_temperatures(rng):
    params = random_params(rng, (4,), 1, 3)
    logits, loc, _ = (to_numpy(t) for t in mdn_keras.split_params(params, 1, 3))
    temperature = np.array([0.0, 1.0, 0.0, 1.0], "float32")
    sigma = np.array([0.0, 0.0, 1.0, 1.0], "float32")
    out = to_numpy(
        mdn_keras.sample(
            params, 1, 3, temperature=temperature, sigma_temperature=sigma, sample_shape=400, seed=2
        )
    )
    best = loc[np.arange(4), np.argmax(logits, -1)]
    np.testing.assert_array_equal(out[:, 0], np.broadcast_to(best[0], (400, 1)))  # both zero
    assert set(np.unique(out[:, 1, 0])) <= set(loc[1, :, 0]) and len(np.unique(out[:, 1])) > 1
    assert np.all(out[:, 2, 0] != best[2, 0]) and abs(np.mean(out[:, 2, 0]) - best[2, 0]) < 0.3
    assert len(np.unique(out[:, 3])) == 400


def test_temperature_tensor_divides_logits_per_row():
    logits = np.array([1.0, 0.0, -1.0])
    loc = np.array([0.0, 100.0, 200.0])
    row = np.concatenate([loc, np.full(3, 1e-3), logits]).astype("float32")
    temps = np.array([0.5, 3.0], "float32")
    draws = to_numpy(
        mdn_keras.sample(np.stack([row, row]), 1, 3, temperature=temps, sample_shape=N, seed=6)
    )
    for i, t in enumerate(temps):
        freq = np.bincount(np.rint(draws[:, i, 0] / 100).astype(int), minlength=3)
        assert stats.chisquare(freq, special.softmax(logits / t) * N).pvalue > ALPHA


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sample_shape": -1}, r"`sample_shape`.*Received: sample_shape=-1"),
        ({"sample_shape": (2.0,)}, r"Received: sample_shape=\(2.0,\)"),
        (
            {"seed": np.array([1, 2, 3])},
            r"shape \(2,\).*Received: seed.shape=\(3,\), seed.dtype=int64",
        ),
        (
            {"seed": np.array([1.0, 2.0])},
            r"integer dtype. Received: seed.shape=\(2,\), seed.dtype=float64",
        ),
        ({"seed": 2**32}, r"\[0, 2\*\*32\). Received: seed=4294967296"),
    ],
)
def test_bad_sample_arguments_raise(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.sample(random_params(rng, (2,), 1, 2), 1, 2, **kwargs)


def test_sample_from_noise_checks_the_noise(rng):
    params = random_params(rng, (4,), 2, 3)
    with pytest.raises(ValueError, match=r"\(\*sample_shape, \.\.\., 7\).*uniform.shape=\(4, 6\)"):
        mdn_keras.sample_from_noise(params, np.zeros((4, 6), "float32"), 2, 3)
    with pytest.raises(ValueError, match=r"`uniform` to be a floating-point.*int32"):
        mdn_keras.sample_from_noise(params, np.zeros((4, 7), "int32"), 2, 3)


# --- seeds: what is reproducible, per backend -------------------------------


def assert_same_draws(got, want):
    """The same noise: equal up to float32 rounding (XLA fuses the arithmetic
    differently from eager kernels, so the last bit may differ)."""
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


def test_seed_tensor_is_reproducible(rng):
    params = random_params(rng, (64,), 2, 3)
    seed = np.array([7, 11], "int32")
    a = to_numpy(mdn_keras.sample(params, 2, 3, seed=ops.convert_to_tensor(seed)))
    b = to_numpy(mdn_keras.sample(params, 2, 3, seed=seed))
    c = to_numpy(mdn_keras.sample(params, 2, 3, seed=np.array([7, 12], "int32")))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a == c) < 0.01


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_compiled_draws_equal_eager_draws(rng, jit_compile):
    import tensorflow as tf

    params = tf.constant(random_params(rng, (32,), 2, 3))
    eager = to_numpy(mdn_keras.sample(params, 2, 3, seed=42))
    fn = tf.function(lambda p: mdn_keras.sample(p, 2, 3, seed=42), jit_compile=jit_compile)
    assert_same_draws(to_numpy(fn(params)), eager)
    keyed = tf.function(lambda p, s: mdn_keras.sample(p, 2, 3, seed=s), jit_compile=jit_compile)
    a = to_numpy(keyed(params, tf.constant([1, 2], tf.int32)))
    b = to_numpy(keyed(params, tf.constant([3, 4], tf.int32)))
    assert np.mean(a == b) < 0.01  # a traced seed tensor draws afresh per seed
    assert_same_draws(keyed(params, tf.constant([1, 2], tf.int32)), a)
    if not jit_compile:  # XLA derives Philox's key from a traced seed its own way
        assert_same_draws(a, mdn_keras.sample(params, 2, 3, seed=tf.constant([1, 2])))
    gen = keras.random.SeedGenerator(5)
    drawn = tf.function(lambda p: mdn_keras.sample(p, 2, 3, seed=gen), jit_compile=jit_compile)
    assert not np.allclose(to_numpy(drawn(params)), to_numpy(drawn(params)))


@pytest.mark.jax_only
def test_jax_jit_with_a_traced_key_draws_fresh_per_key(rng):
    import jax

    params = random_params(rng, (32,), 2, 3)
    fn = jax.jit(lambda p, key: mdn_keras.sample(p, 2, 3, seed=key))
    a, b = fn(params, jax.random.key(0)), fn(params, jax.random.key(1))
    assert np.mean(np.asarray(a) == np.asarray(b)) < 0.01
    assert_same_draws(
        np.asarray(a), np.asarray(mdn_keras.sample(params, 2, 3, seed=jax.random.key(0)))
    )
    raw = jax.jit(lambda p, s: mdn_keras.sample(p, 2, 3, seed=s))(
        params, np.array([1, 2], "uint32")
    )
    assert_same_draws(
        np.asarray(raw), to_numpy(mdn_keras.sample(params, 2, 3, seed=np.array([1, 2])))
    )
    assert_same_draws(
        np.asarray(jax.jit(lambda p: mdn_keras.sample(p, 2, 3, seed=42))(params)),
        to_numpy(mdn_keras.sample(params, 2, 3, seed=42)),
    )


@pytest.mark.jax_only
def test_jax_jit_refuses_a_seed_generator_and_leaves_it_usable(rng):
    import jax

    params = random_params(rng, (8,), 1, 2)
    gen = keras.random.SeedGenerator(3)
    with pytest.raises(
        ValueError, match=r"SeedGenerator cannot be advanced inside `jax.jit`.*jax.random.key"
    ):
        jax.jit(lambda p: mdn_keras.sample(p, 1, 2, seed=gen))(params)
    first = to_numpy(mdn_keras.sample(params, 1, 2, seed=gen))  # eager use still works
    assert not np.allclose(first, to_numpy(mdn_keras.sample(params, 1, 2, seed=gen)))

    # Inside a keras.StatelessScope (how Keras runs layers under jit) it is allowed.
    def scoped(p, state):
        with keras.StatelessScope(state_mapping=[(gen.state, state)]) as scope:
            out = mdn_keras.sample(p, 1, 2, seed=gen)
        return out, scope.get_current_value(gen.state)

    out, new_state = jax.jit(scoped)(params, gen.state.value)
    assert out.shape == (8, 1) and not np.array_equal(
        np.asarray(new_state), np.asarray(gen.state.value)
    )


@pytest.mark.torch_only
def test_torch_compile_draws(rng):
    import torch

    params = torch.tensor(random_params(rng, (32,), 2, 3))
    eager = to_numpy(mdn_keras.sample(params, 2, 3, seed=42))
    fn = torch.compile(lambda p: mdn_keras.sample(p, 2, 3, seed=42))
    first = to_numpy(fn(params))
    # Inductor generates its own random numbers: reproducible, not eager's.
    np.testing.assert_array_equal(to_numpy(fn(params)), first)
    assert first.shape == eager.shape and np.all(np.isfinite(first))
