"""The package's functions on `keras.Input`: functional models whose outputs
are modes, quantiles, intervals, noise-driven draws or the loss, on every
backend; saved and reloaded; random functions refused with a clear error."""

import keras
import numpy as np
import pytest
from keras import ops

import mdn_keras
from backend_utils import to_numpy
from mdn_keras.families import StudentT

K = 3


def head(d, component="normal"):
    """`x (4,) -> params`: the functional graph's input and its MDN output."""
    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    h = keras.layers.Dense(8, activation="tanh")(x)
    return x, mdn_keras.MDN(d, K, component=component)(h)


def data(rng, n=6):
    return rng.normal(size=(n, 4)).astype("float32")


# name -> (D, component, the function of the params and the extra input)
CASES = {
    "mixture_mode": (2, "normal", lambda p, u: mdn_keras.mixture_mode(p, 2, K)),
    "mixture_mode[student_t]": (
        2,
        StudentT(min_df=2.0),
        lambda p, u: mdn_keras.mixture_mode(p, 2, K, component=StudentT(min_df=2.0)),
    ),
    "mixture_quantile": (1, "normal", lambda p, u: mdn_keras.mixture_quantile(p, 0.9, 1, K)),
    "mixture_quantile[levels]": (
        1,
        "laplace",
        lambda p, u: mdn_keras.mixture_quantile(
            p, np.array([0.1, 0.5, 0.9], "float32"), 1, K, component="laplace"
        ),
    ),
    "prediction_interval": (1, "normal", lambda p, u: mdn_keras.prediction_interval(p, 0.8, 1, K)),
    "portable_quantile": (1, "normal", lambda p, u: mdn_keras.portable_quantile(p, 0.25, 1, K)),
    "sample_from_noise": (
        2,
        "normal",
        lambda p, u: mdn_keras.sample_from_noise(p, u, 2, K, temperature=0.5),
    ),
    "mdn_nll": (2, "normal", lambda p, u: mdn_keras.mdn_nll(u[..., :2], p, 2, K)),
}


def build(name):
    d, component, fn = CASES[name]
    x, params = head(d, component)
    u = keras.Input((mdn_keras.noise_size(d, K, component),))
    out = fn(params, u)
    outputs = list(out) if isinstance(out, tuple) else [out]
    return keras.Model([x, u], [params, *outputs]), fn, len(outputs)


def inputs(rng, name):
    d, component, _ = CASES[name]
    u = rng.uniform(0.05, 0.95, size=(6, mdn_keras.noise_size(d, K, component)))
    return [data(rng), u.astype("float32")]


def check_outputs(results, fn, u):
    """The model's outputs are the function's, called eagerly on its params."""
    params, *got = (to_numpy(r) for r in results)
    want = fn(ops.convert_to_tensor(params), ops.convert_to_tensor(u))
    want = [to_numpy(w) for w in (want if isinstance(want, tuple) else (want,))]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_functional_model_of_the_function(rng, name):
    model, fn, n_out = build(name)
    ops_made = [op for op in model.operations if isinstance(op, mdn_keras.MixtureFunction)]
    assert len(ops_made) == 1 and ops_made[0].function == name.split("[")[0]
    batch = inputs(rng, name)
    check_outputs(model(batch), fn, batch[1])
    check_outputs(model.predict(batch, verbose=0), fn, batch[1])  # compiled on JAX and TF


def test_two_calls_of_one_function_in_a_model_save_and_reload(rng, tmp_path):
    x, params = head(1)
    low = mdn_keras.mixture_quantile(params, 0.1, 1, K)
    high = mdn_keras.mixture_quantile(params, 0.9, 1, K)
    model = keras.Model(x, [low, high])
    batch = data(rng)
    got = [to_numpy(t) for t in model(batch)]
    assert np.all(got[0] < got[1])
    path = str(tmp_path / "two.keras")
    model.save(path)
    again = [to_numpy(t) for t in keras.models.load_model(path, safe_mode=True)(batch)]
    for a, b in zip(again, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_symbolic_output_shapes():
    x, params = head(2)
    assert tuple(mdn_keras.mixture_mode(params, 2, K).shape) == (None, 2)
    _, params1 = head(1)
    assert tuple(mdn_keras.mixture_quantile(params1, 0.5, 1, K).shape) == (None,)
    levels = np.array([0.1, 0.9], "float32")
    # Levels first, as numpy.quantile: (Q, *params.shape[:-1]).
    assert tuple(mdn_keras.mixture_quantile(params1, levels, 1, K).shape) == (2, None)
    lower, upper = mdn_keras.prediction_interval(params1, 0.9, 1, K)
    assert tuple(lower.shape) == tuple(upper.shape) == (None,)


@pytest.mark.parametrize("name", ["mixture_mode[student_t]", "mixture_quantile[levels]"])
def test_functional_model_saves_and_reloads(rng, tmp_path, name):
    model, fn, _ = build(name)
    batch = inputs(rng, name)
    before = [to_numpy(r) for r in model(batch)]
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    op = next(o for o in loaded.operations if isinstance(o, mdn_keras.MixtureFunction))
    assert op.function == name.split("[")[0]
    after = [to_numpy(r) for r in loaded(batch)]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    check_outputs(loaded(batch), fn, batch[1])


@pytest.mark.parametrize("component", sorted(mdn_keras.FAMILIES))
def test_split_and_join_params_in_a_functional_model(rng, component):
    # join_params of a batch of unknown size (the flat size is known).
    x, params = head(2, component)
    joined = mdn_keras.join_params(
        *mdn_keras.split_params(params, 2, K, component=component), component=component
    )
    assert tuple(joined.shape) == tuple(params.shape)
    got, want = keras.Model(x, [joined, params])(data(rng))
    np.testing.assert_array_equal(to_numpy(got), to_numpy(want))


def test_random_functions_refuse_symbolic_tensors():
    x, params = head(2)
    with pytest.raises(
        ValueError, match=r"`sample`.*MixtureSample.*params=<KerasTensor shape=\(None, 15\)>"
    ):
        mdn_keras.sample(params, 2, K, seed=0)
    y = keras.Input((2,))
    with pytest.raises(ValueError, match=r"`energy_score`.*model's outputs.*y=<KerasTensor"):
        mdn_keras.energy_score(params, y, 2, K, seed=0)


def test_mixture_function_names_the_functions_it_knows():
    with pytest.raises(
        ValueError, match=r"one of \[.*'mixture_mode'.*\]\. Received: 'mixture_mean'"
    ):
        mdn_keras.MixtureFunction("mixture_mean", ["params"])
