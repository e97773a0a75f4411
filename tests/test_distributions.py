"""`to_tfp`, `to_distribution` and `Mixture`, with TensorFlow Probability as the oracle.

The same file runs on every backend: TFP's TensorFlow path, its JAX substrate,
and (under PyTorch) its NumPy substrate; `to_distribution` is also checked
against `torch.distributions` semantics on PyTorch.
"""

import functools
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from scipy import special

import mdn_keras
from mdn_keras import Mixture, to_distribution, to_tfp
from reference import np_log_prob, np_split, random_params

BACKEND = keras.backend.backend()
BATCH_SHAPES = [(), (10,), (4, 6)]
D, K = 2, 3


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def tfp_seed():
    if BACKEND == "jax":
        import jax

        return jax.random.PRNGKey(0)
    return 7


def np_moments(params, d, k):
    """Float64 mixture mean and per-dimension variance, one component at a time."""
    logits, loc, scale = np_split(params, d, k)
    pi = special.softmax(logits, axis=-1)
    mean = sum(pi[..., j, None] * loc[..., j, :] for j in range(k))
    second = sum(pi[..., j, None] * (scale[..., j, :] ** 2 + loc[..., j, :] ** 2) for j in range(k))
    return mean, second - mean**2


def tfp_eval(fn, *args):
    """`fn(*args)` as NumPy; under `jax.jit` on JAX, where one compilation is much
    faster than the op-by-op eager mode (TFP's JAX substrate especially)."""
    if BACKEND == "jax":
        import jax

        fn = jax.jit(fn)
    out = fn(*args)
    return keras.tree.map_structure(to_np, out)


#: The batch shape whose TFP samples are drawn and checked against the moments;
#: the others only check the sample shape (compiling TFP's sampler takes seconds on JAX).
SAMPLED_BATCH = (4, 6)


def _tfp_summary(params, y, seed, with_sample):
    dist = to_tfp(params, D, K)
    out = {
        "log_prob": dist.log_prob(y),
        "native_log_prob": to_distribution(params, D, K).log_prob(keras.ops.convert_to_tensor(y)),
        "mean": dist.mean(),
        "variance": dist.variance(),
        "stddev": dist.stddev(),
    }
    if with_sample:
        out["sample"] = dist.sample(4000, seed=seed)
    return out


def tfp_sample_shape(params, n):
    if BACKEND == "jax":
        import jax

        fn = lambda p, s: to_tfp(p, D, K).sample(n, seed=s)  # noqa: E731
        return tuple(jax.eval_shape(fn, params, tfp_seed()).shape)
    return tuple(to_tfp(params, D, K).sample(n, seed=tfp_seed()).shape)


@pytest.fixture(scope="module")
def tfp_case():
    """Per batch shape: params, targets, the TFP object and its outputs, computed once."""
    cache = {}

    def get(batch):
        if batch not in cache:
            rng = np.random.default_rng(100 + len(batch))
            params = random_params(rng, batch, D, K)
            y = rng.normal(0, 2, size=(*batch, D)).astype(np.float32)
            summary = tfp_eval(
                functools.partial(_tfp_summary, with_sample=batch == SAMPLED_BATCH),
                params,
                y,
                tfp_seed(),
            )
            cache[batch] = params, y, to_tfp(params, D, K), summary
        return cache[batch]

    return get


@pytest.fixture(scope="module")
def tfd_module(tfp_case):
    """Imports TFP once per module (it loads TensorFlow, a few seconds)."""
    tfp_case(())


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_to_tfp_shapes(batch, tfp_case):
    params, _, dist, out = tfp_case(batch)
    assert tuple(dist.batch_shape) == batch
    assert tuple(dist.event_shape) == (D,)
    assert type(dist).__name__ == "MixtureSameFamily"
    assert type(dist.mixture_distribution).__name__ == "Categorical"
    assert type(dist.components_distribution).__name__ == "MultivariateNormalDiag"
    assert tuple(dist.mixture_distribution.logits.shape) == (*batch, K)
    assert tuple(dist.components_distribution.batch_shape) == (*batch, K)
    assert tfp_sample_shape(params, 5) == (5, *batch, D)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_to_tfp_log_prob_matches_package_and_reference(batch, tfp_case):
    params, y, _, out = tfp_case(batch)
    ours = to_np(mdn_keras.log_prob(params, y, D, K))
    assert out["log_prob"].shape == batch
    np.testing.assert_allclose(out["log_prob"], ours, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["log_prob"], np_log_prob(params, y, D, K), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_to_tfp_moments_match_statistics_and_reference(batch, tfp_case):
    params, _, _, out = tfp_case(batch)
    ref_mean, ref_var = np_moments(params, D, K)
    assert out["mean"].shape == out["variance"].shape == (*batch, D)
    np.testing.assert_allclose(out["mean"], to_np(mdn_keras.mixture_mean(params, D, K)), atol=1e-5)
    np.testing.assert_allclose(
        out["variance"], to_np(mdn_keras.mixture_variance(params, D, K)), rtol=1e-5
    )
    np.testing.assert_allclose(out["mean"], ref_mean, atol=1e-5)
    np.testing.assert_allclose(out["variance"], ref_var, rtol=1e-5)
    np.testing.assert_allclose(
        out["stddev"], to_np(mdn_keras.mixture_stddev(params, D, K)), rtol=1e-5
    )


def test_to_tfp_samples_follow_the_mixture(tfp_case):
    params, _, _, out = tfp_case(SAMPLED_BATCH)
    draws = out["sample"].astype(np.float64)
    assert draws.shape == (4000, *SAMPLED_BATCH, D)
    mean, var = np_moments(params, D, K)
    # Sample mean within 5 standard errors of the analytic mean, for every entry.
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * np.sqrt(var / len(draws)))


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_to_distribution_matches_log_prob(batch, tfp_case):
    params, y, _, out = tfp_case(batch)
    dist = to_distribution(params, D, K)
    assert tuple(dist.batch_shape) == batch
    assert tuple(dist.event_shape) == (D,)
    if BACKEND == "torch":
        import torch.distributions as td

        assert isinstance(dist, td.MixtureSameFamily)
        assert isinstance(dist.component_distribution, td.Independent)
        ref_mean, ref_var = np_moments(params, D, K)
        np.testing.assert_allclose(to_np(dist.mean), ref_mean, atol=1e-5)
        np.testing.assert_allclose(to_np(dist.variance), ref_var, rtol=1e-5)
        assert tuple(dist.sample((3,)).shape) == (3, *batch, D)
    else:
        assert type(dist) is type(to_tfp(params, D, K))
    np.testing.assert_allclose(
        out["native_log_prob"], np_log_prob(params, y, D, K), rtol=1e-5, atol=1e-5
    )


@pytest.mark.jax_only
def test_to_tfp_under_jax_jit_and_grad(rng, tfd_module):
    import jax
    import jax.numpy as jnp

    params = jnp.asarray(random_params(rng, (4, 6), D, K))
    y = jnp.asarray(rng.normal(size=(4, 6, D)).astype(np.float32))
    jitted = jax.jit(lambda p, y: to_tfp(p, D, K).log_prob(y))
    np.testing.assert_allclose(
        np.asarray(jitted(params, y)), np_log_prob(params, y, D, K), rtol=1e-5, atol=1e-5
    )
    grad = jax.jit(jax.grad(lambda p: jnp.sum(to_tfp(p, D, K).log_prob(y))))(params)
    ref_grad = jax.jit(jax.grad(lambda p: jnp.sum(mdn_keras.log_prob(p, y, D, K))))(params)
    assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-4, atol=1e-5)
    jitted_mean = jax.jit(lambda p: Mixture(p, D, K).to_tfp().mean())
    np.testing.assert_allclose(
        np.asarray(jitted_mean(params)), np_moments(params, D, K)[0], atol=1e-5
    )


def _mdn_model(seed=0):
    keras.utils.set_random_seed(seed)
    layer = mdn_keras.MDN(D, K)
    layer.build((None, 5))
    return layer


@pytest.mark.tensorflow_only
def test_to_tfp_is_differentiable_on_tensorflow(rng, tfd_module):
    import tensorflow as tf

    layer = _mdn_model()
    x = tf.constant(rng.normal(size=(8, 5)).astype(np.float32))
    y = tf.constant(rng.normal(size=(8, D)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(to_distribution(layer(x), D, K).log_prob(y))
    grad = tape.gradient(loss, layer.kernel.value)
    grad = grad.numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.torch_only
def test_to_distribution_on_torch_keeps_device_and_gradients(rng):
    import torch

    layer = _mdn_model()
    x = keras.ops.convert_to_tensor(rng.normal(size=(8, 5)).astype(np.float32))
    y = keras.ops.convert_to_tensor(rng.normal(size=(8, D)).astype(np.float32))
    params = layer(x)
    dist = to_distribution(params, D, K)
    assert isinstance(dist, torch.distributions.MixtureSameFamily)
    assert dist.mixture_distribution.logits.device == params.device
    assert dist.component_distribution.base_dist.loc.device == params.device
    assert dist.sample((2,)).device == params.device
    loss = -dist.log_prob(y).mean()
    np.testing.assert_allclose(
        loss.item(), -to_np(mdn_keras.log_prob(params, y, D, K)).mean(), rtol=1e-5
    )
    loss.backward()
    grad = layer.kernel.value.grad
    assert grad is not None
    grad = grad.detach().cpu().numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.torch_only
def test_to_tfp_on_torch_is_a_numpy_substrate_copy(rng, tfd_module):
    params = keras.ops.convert_to_tensor(random_params(rng, (3,), D, K))
    dist = to_tfp(params, D, K)
    assert "substrates.numpy" in type(dist).__module__
    assert isinstance(dist.components_distribution.loc, np.ndarray)
    np.testing.assert_allclose(
        dist.components_distribution.loc, to_np(mdn_keras.split_params(params, D, K)[1])
    )


def test_missing_tfp_raises_import_error_naming_the_extra(monkeypatch, rng):
    params = random_params(rng, (2,), D, K)
    monkeypatch.setitem(sys.modules, "tensorflow_probability", None)
    with pytest.raises(ImportError, match=re.escape('pip install "mdn_keras[tfp]"')):
        to_tfp(params, D, K)
    with pytest.raises(ImportError, match=re.escape('pip install "mdn_keras[tfp]"')):
        Mixture(params, D, K).to_tfp()
    if BACKEND == "torch":
        # The torch-native object needs no TFP.
        dist = to_distribution(params, D, K)
        assert tuple(dist.batch_shape) == (2,)
    else:
        with pytest.raises(ImportError, match=re.escape('"mdn_keras[tfp]"')):
            to_distribution(params, D, K)


@pytest.mark.tensorflow_only
def test_missing_tf_keras_names_the_tensorflow_extra(monkeypatch, rng):
    monkeypatch.setitem(sys.modules, "tf_keras", None)
    with pytest.raises(ImportError, match=re.escape('pip install "mdn_keras[tensorflow,tfp]"')):
        to_tfp(random_params(rng, (2,), D, K), D, K)


def test_import_mdn_keras_does_not_load_tfp_or_tensorflow():
    code = (
        "import sys, mdn_keras; "
        "print('tfp' if 'tensorflow_probability' in sys.modules else 'no-tfp', "
        "'tf' if 'tensorflow' in sys.modules else 'no-tf')"
    )
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "no-tfp"
    if BACKEND in ("jax", "torch"):
        assert out[1] == "no-tf"


def test_to_tfp_rejects_bad_params(rng):
    with pytest.raises(ValueError, match=r"params.shape\[-1\] == .* = 15.*params.shape=\(4, 14\)"):
        to_tfp(np.zeros((4, 14), np.float32), D, K)
    with pytest.raises(ValueError, match="floating-point"):
        to_distribution(np.zeros((4, 15), np.int32), D, K)
    with pytest.raises(ValueError, match="num_mixtures=0"):
        to_tfp(np.zeros((4, 15), np.float32), D, 0)


# --- Mixture -------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_mixture_properties(batch, rng):
    params = random_params(rng, batch, D, K)
    mix = Mixture(params, D, K)
    logits, loc, scale = np_split(params, D, K)
    assert mix.batch_shape == batch
    assert mix.event_shape == (D,)
    np.testing.assert_allclose(to_np(mix.logits), logits, rtol=1e-6)
    np.testing.assert_allclose(to_np(mix.probs), special.softmax(logits, -1), rtol=1e-5)
    np.testing.assert_allclose(to_np(mix.loc), loc, rtol=1e-6)
    np.testing.assert_allclose(to_np(mix.scale), scale, rtol=1e-6)
    assert f"batch_shape={batch}" in repr(mix) and "num_mixtures=3" in repr(mix)


def test_mixture_methods_match_functions(rng):
    params = random_params(rng, (4, 6), D, K)
    y = rng.normal(size=(4, 6, D)).astype(np.float32)

    def pairs(params, y):
        mix = Mixture(params, D, K)
        return [
            (mix.log_prob(y), mdn_keras.log_prob(params, y, D, K)),
            (mix.mean(), mdn_keras.mixture_mean(params, D, K)),
            (mix.variance(), mdn_keras.mixture_variance(params, D, K)),
            (mix.stddev(), mdn_keras.mixture_stddev(params, D, K)),
            (mix.mode(num_iterations=5), mdn_keras.mixture_mode(params, D, K, num_iterations=5)),
            (
                mix.most_probable_component_mean(),
                mdn_keras.most_probable_component_mean(params, D, K),
            ),
            (
                mix.sample(temperature=0.5, sigma_temperature=0.5, seed=3),
                mdn_keras.sample(params, D, K, temperature=0.5, sigma_temperature=0.5, seed=3),
            ),
        ]

    for got, want in tfp_eval(pairs, params, y):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    params1 = random_params(rng, (5,), 1, K)
    y1 = rng.normal(size=(5,)).astype(np.float32)

    def pairs_1d(params, y):
        mix = Mixture(params, 1, K)
        return [
            (mix.cdf(y), mdn_keras.mixture_cdf(params, y, 1, K)),
            (mix.quantile(0.3), mdn_keras.mixture_quantile(params, 0.3, 1, K)),
            (mix.interval(0.8), mdn_keras.prediction_interval(params, 0.8, 1, K)),
        ]

    for got, want in tfp_eval(pairs_1d, params1, y1):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="output_dim=2"):
        Mixture(params, D, K).cdf(y)


def test_mixture_to_distribution_and_layer_helper(rng, tfd_module):
    layer = _mdn_model()
    x = rng.normal(size=(8, 5)).astype(np.float32)
    params = layer(keras.ops.convert_to_tensor(x))
    mix = layer.mixture(params)
    assert isinstance(mix, Mixture)
    assert (mix.output_dim, mix.num_mixtures, mix.batch_shape) == (D, K, (8,))
    y = rng.normal(size=(8, D)).astype(np.float32)
    y_in = keras.ops.convert_to_tensor(y)
    want = np_log_prob(to_np(params), y, D, K)
    np.testing.assert_allclose(to_np(mix.params), to_np(params))
    native = tfp_eval(lambda p, y: layer.mixture(p).to_distribution().log_prob(y), params, y_in)
    via_tfp = tfp_eval(lambda p, y: layer.mixture(p).to_tfp().log_prob(y), params, y)
    np.testing.assert_allclose(native, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(via_tfp, want, rtol=1e-5, atol=1e-5)


def test_mixture_rejects_bad_params():
    with pytest.raises(ValueError, match=r"params.shape=\(3, 7\)"):
        Mixture(np.zeros((3, 7), np.float32), D, K)
    with pytest.raises(ValueError, match="output_dim=0"):
        Mixture(np.zeros((3, 15), np.float32), 0, K)
