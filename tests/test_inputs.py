"""No silently wrong answers (issue 8): strict loss targets, per-layer mixed
precision, NumPy scalars, one shape rule for temperatures and levels, and the
small cases (Conv1D in make_step_model, float64 on JAX, out-of-range tensors).

Every expectation is computed from a float64 NumPy reference, on every backend.
"""

import json
import math

import keras
import numpy as np
import pytest
from keras import ops
from scipy import optimize, special, stats

import mdn_keras
from backend_utils import BACKEND, compiled, to_numpy
from reference import np_log_prob, np_split, random_params

F32 = "float32"


def dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


def valid_params(rng, lead, d, k):
    """Random params with positive scales (random_params may draw any sign)."""
    params = random_params(rng, lead, d, k)
    params[..., k * d : 2 * k * d] = np.abs(params[..., k * d : 2 * k * d]) + 0.2
    return params


# ------------------------------------------------------------ 1. strict loss targets


@pytest.mark.parametrize(
    "y_shape,pred_shape,d,k",
    [
        ((4, 1, 2), (4, 15), 2, 3),  # broadcast to the 4x4 cross pairs before
        ((1, 2), (4, 15), 2, 3),
        ((4, 1), (4, 5, 9), 1, 3),  # (B, 1) targets for a (B, T, P) sequence model
        ((4,), (4, 5, 9), 1, 3),
        ((4, 5, 1, 1), (4, 5, 9), 1, 3),
        ((3, 2), (4, 15), 2, 3),
    ],
)
def test_loss_refuses_targets_that_only_broadcast(rng, y_shape, pred_shape, d, k):
    y = rng.normal(size=y_shape).astype(F32)
    params = valid_params(rng, pred_shape[:-1], d, k)
    shapes = rf"Received: y_true.shape={re_shape(y_shape)}, y_pred.shape={re_shape(pred_shape)}"
    with pytest.raises(ValueError, match=r"the leading axes must be equal.*" + shapes):
        mdn_keras.MDNLoss(d, k)(y, params)
    with pytest.raises(ValueError, match=shapes):
        mdn_keras.mdn_nll(y, params, d, k)
    with pytest.raises(ValueError, match=shapes):
        mdn_keras.MDNLoss(d, k, reduction="none")(y, params)


def re_shape(shape):
    return r"\(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + r"\)"


def test_loss_accepts_exact_targets_and_the_dropped_last_axis(rng):
    params = valid_params(rng, (4, 5), 1, 3)
    y = rng.normal(size=(4, 5)).astype(F32)
    want = -np_log_prob(params, y[..., None], 1, 3)
    loss = mdn_keras.MDNLoss(1, 3, reduction="none")
    np.testing.assert_allclose(to_numpy(loss(y, params)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(loss(y[..., None], params)), want, rtol=1e-5, atol=1e-5)


def sequence_model(output_dim):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), mdn_keras.MDN(output_dim, 2)])
    model.compile(optimizer="adam", loss=mdn_keras.MDNLoss(output_dim, 2))
    return model


@pytest.mark.parametrize("y_shape", [(8, 1), (8,), (8, 1, 1)])
@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_fit_and_evaluate_refuse_targets_that_only_broadcast(rng, y_shape, method):
    x = rng.normal(size=(8, 5, 3)).astype(F32)
    y = rng.normal(size=y_shape).astype(F32)
    model = sequence_model(1)
    with pytest.raises(
        ValueError, match=r"Received: y_true.shape=\(4, ?1?,?.*y_pred.shape=\(4, 5, 6\)"
    ):
        getattr(model, method)(x, y, batch_size=4, verbose=0)


def test_fit_and_evaluate_accept_per_timestep_targets(rng):
    x = rng.normal(size=(8, 5, 3)).astype(F32)
    y = rng.normal(size=(8, 5)).astype(F32)
    model = sequence_model(1)
    want = float(np.mean(-np_log_prob(to_numpy(model.predict(x, verbose=0)), y[..., None], 1, 2)))
    got = model.evaluate(x, y, batch_size=8, verbose=0)
    assert got == pytest.approx(want, rel=1e-5)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.tensorflow_only
def test_tf_graph_with_unknown_axes_checks_shapes_in_graph(rng):
    import tensorflow as tf

    loss = mdn_keras.MDNLoss(2, 3)
    fn = tf.function(
        lambda y, p: loss(y, p),
        input_signature=[
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None, 15], tf.float32),
        ],
    )
    params = valid_params(rng, (4,), 2, 3)
    y = rng.normal(size=(4, 2)).astype(F32)
    assert float(fn(y, params)) == pytest.approx(np.mean(-np_log_prob(params, y, 2, 3)), rel=1e-5)
    for bad in [(3, 2), (4, 1), (1, 2)]:
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=rf"Received: y_true.shape={re_shape(bad)}, y_pred.shape=\(4, 15\)",
        ):
            fn(rng.normal(size=bad).astype(F32), params)


@pytest.mark.tensorflow_only
def test_tf_fit_from_a_dataset_with_unknown_batch_checks_in_graph(rng):
    import tensorflow as tf

    x = rng.normal(size=(8, 5, 3)).astype(F32)
    y = rng.normal(size=(8, 5)).astype(F32)
    model = sequence_model(1)
    # Targets of one fewer timestep: the time axis is unknown to the traced graph.
    ds = tf.data.Dataset.from_generator(
        lambda: iter([(x[:4], y[:4, :4])]),
        output_signature=(
            tf.TensorSpec([None, 5, 3], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
        ),
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"Received: y_true.shape=\(4, 4\), y_pred.shape=\(4, 5, 6\)",
    ):
        model.evaluate(ds, verbose=0)


def test_log_prob_broadcasts_on_purpose(rng):
    d, k = 2, 3
    # One mixture, a grid of 7 candidate points.
    params = valid_params(rng, (), d, k)
    grid = rng.normal(size=(7, d)).astype(F32)
    got = to_numpy(mdn_keras.log_prob(params, grid, d, k))
    assert got.shape == (7,)
    np.testing.assert_allclose(got, np_log_prob(np.tile(params, (7, 1)), grid, d, k), rtol=1e-5)
    # Every one of 6 candidates under each of 4 rows' mixtures: (6, 1, D) x (4, P) -> (6, 4).
    params = valid_params(rng, (4,), d, k)
    cands = rng.normal(size=(6, 1, d)).astype(F32)
    got = to_numpy(mdn_keras.log_prob(params, cands, d, k))
    assert got.shape == (6, 4)
    want = np_log_prob(
        np.broadcast_to(params, (6, 4, params.shape[-1])), np.repeat(cands, 4, 1), d, k
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)


# ------------------------------------------------------------ 2. per-layer mixed policy


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_per_layer_mixed_policy_computes_and_returns_float32(rng, policy):
    head = mdn_keras.MDN(2, 3, dtype=policy)
    x = rng.normal(size=(4, 5)).astype(F32)
    out = head(x)
    assert head.compute_dtype == "float32" and dtype_name(out) == "float32"
    assert dtype_name(head.kernel) == "float32"
    # Far targets keep a finite, exact log-density (float16 gave -inf at 1e5).
    y = np.full((4, 2), 1e5, F32)
    got = to_numpy(mdn_keras.log_prob(out, y, 2, 3))
    want = np_log_prob(to_numpy(out), y, 2, 3)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The body of the model keeps the policy.
    body = keras.layers.Dense(5, dtype=policy)
    assert dtype_name(body(x)) == policy.split("_")[1]


# ------------------------------------------------------------ 3. NumPy scalars


def test_numpy_integer_and_float_scalars_are_accepted(rng):
    head = mdn_keras.MDN(
        np.int64(2), np.int32(3), min_scale=np.float32(1e-3), max_scale=np.float64(50.0)
    )
    config = head.get_config()
    for key, kind in [("output_dim", int), ("num_mixtures", int), ("min_scale", float)]:
        assert type(config[key]) is kind
    assert type(config["max_scale"]) is float
    json.dumps(config)  # plain Python types only
    out = head(rng.normal(size=(4, 5)).astype(F32))
    assert out.shape == (4, 15)
    scale = to_numpy(out)[:, 6:12]
    assert scale.min() >= np.float32(1e-3) * (1 - 1e-6) and scale.max() <= 50.0

    loss = mdn_keras.MDNLoss(np.int64(2), np.int64(3))
    assert type(loss.get_config()["output_dim"]) is int
    assert mdn_keras.params_size(np.int16(2), np.uint8(3)) == 15
    params = valid_params(rng, (6,), 2, 3)
    for seed in [np.int64(7), np.uint32(7), np.int8(7)]:
        np.testing.assert_array_equal(
            to_numpy(mdn_keras.sample(params, 2, 3, seed=seed)),
            to_numpy(mdn_keras.sample(params, 2, 3, seed=7)),
        )
    np.testing.assert_array_equal(
        to_numpy(mdn_keras.mixture_mode(params, 2, 3, np.int64(20), np.float32(1e-3))),
        to_numpy(mdn_keras.mixture_mode(params, 2, 3, 20, float(np.float32(1e-3)))),
    )
    raw = rng.normal(size=(4, 3)).astype(F32)
    np.testing.assert_array_equal(
        to_numpy(mdn_keras.scale_from_raw(raw, "softplus", np.float64(1e-2), np.float32(3.0))),
        to_numpy(mdn_keras.scale_from_raw(raw, "softplus", 1e-2, float(np.float32(3.0)))),
    )
    params1 = valid_params(rng, (3,), 1, 2)
    np.testing.assert_array_equal(
        to_numpy(mdn_keras.mixture_quantile(params1, 0.3, 1, 2, num_iterations=np.int64(40))),
        to_numpy(mdn_keras.mixture_quantile(params1, 0.3, 1, 2, num_iterations=40)),
    )
    model = mdn_keras.build_mdn_rnn(np.int64(2), np.int64(1), np.int64(4), np.int64(2))
    step = mdn_keras.make_step_model(model)
    z0 = rng.normal(size=(3, 2)).astype(F32)
    actions = rng.normal(size=(3, 4, 1)).astype(F32)
    a = mdn_keras.rollout(step, z0, np.int64(4), 2, 2, actions=actions, seed=np.int64(5))
    b = mdn_keras.rollout(step, z0, 4, 2, 2, actions=actions, seed=5)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize(
    "call",
    [
        lambda p: mdn_keras.MDN(np.bool_(True), 3),
        lambda p: mdn_keras.MDNLoss(2, np.True_),
        lambda p: mdn_keras.MDN(2, 3, min_scale=np.bool_(True)),
        lambda p: mdn_keras.sample(p, 2, 3, seed=np.bool_(True)),
        lambda p: mdn_keras.sample(p, 2, 3, seed=True),
        lambda p: mdn_keras.sample(p, 2, 3, temperature=np.bool_(True)),
        lambda p: mdn_keras.mixture_mode(p, 2, 3, tolerance=np.bool_(False)),
        lambda p: mdn_keras.mixture_mode(p, 2, 3, num_iterations=np.float64(3.0)),
    ],
)
def test_bools_and_non_integers_stay_refused(rng, call):
    with pytest.raises(ValueError, match="Received:"):
        call(valid_params(rng, (2,), 2, 3))


# ------------------------------------------------------------ 4. temperatures


def temperature_forms(values):
    """The same temperature as a list, a NumPy array and a backend tensor."""
    array = np.asarray(values, F32)
    return [
        list(map(float, array.ravel())) if array.ndim else float(array),
        array,
        ops.convert_to_tensor(array),
    ]


@pytest.mark.parametrize("values", [0.7, [0.0, 0.7, 2.0, 0.0, 1.0]])
def test_temperature_forms_give_identical_draws(rng, values):
    params = valid_params(rng, (5,), 2, 3)
    draws = [
        to_numpy(mdn_keras.sample(params, 2, 3, temperature=t, sigma_temperature=t, seed=3))
        for t in temperature_forms(values)
    ]
    assert draws[0].shape == (5, 2)
    for other in draws[1:]:
        np.testing.assert_array_equal(other, draws[0])


def test_per_row_temperature_of_shape_lead(rng):
    k = 3
    params = valid_params(rng, (4, 6), 2, k)
    logits, loc, _ = np_split(params, 2, k)
    # Rows with both temperatures 0 give their most probable component mean; the others vary.
    t = (rng.uniform(size=(4, 6)) < 0.5).astype(F32)
    got = to_numpy(mdn_keras.sample(params, 2, k, temperature=t, sigma_temperature=t, seed=1))
    assert got.shape == (4, 6, 2)
    best = np.take_along_axis(loc, np.argmax(logits, -1)[..., None, None], -2)[..., 0, :]
    zero = t == 0
    np.testing.assert_allclose(got[zero], best[zero], rtol=1e-6)
    assert np.all(np.abs(got[~zero] - best[~zero]).max(-1) > 0)
    # A constant per-row temperature is the same draw as the 0-d one.
    same = [
        to_numpy(mdn_keras.sample(params, 2, k, temperature=v, seed=2))
        for v in (np.full((4, 6), 0.5, F32), ops.convert_to_tensor(np.float32(0.5)))
    ]
    np.testing.assert_array_equal(same[0], same[1])


@pytest.mark.parametrize("shape", [(4, 1), (3,), (1, 4), (4, 4)])
@pytest.mark.parametrize("name", ["temperature", "sigma_temperature"])
def test_other_temperature_shapes_raise(rng, shape, name):
    params = valid_params(rng, (4,), 2, 3)
    for value in (np.ones(shape, F32), ops.ones(shape)):
        with pytest.raises(
            ValueError,
            match=rf"params.shape\[:-1\] = \(4,\)\. Received: {name}.shape={re_shape(shape)}, "
            r"params.shape=\(4, 15\)",
        ):
            mdn_keras.sample(params, 2, 3, seed=0, **{name: value})


def test_invalid_tensor_temperatures_give_nan_rows(rng):
    params = valid_params(rng, (5,), 2, 3)
    bad = np.array([1.0, -1.0, np.nan, np.inf, 0.5], F32)
    for kwargs in ({"temperature": bad}, {"sigma_temperature": bad}):
        tensor_kwargs = {k: ops.convert_to_tensor(v) for k, v in kwargs.items()}
        got = to_numpy(
            compiled(lambda p, kw=tensor_kwargs: mdn_keras.sample(p, 2, 3, seed=0, **kw))(params)
        )
        assert np.all(np.isfinite(got[[0, 4]]))
        assert np.all(np.isnan(got[[1, 2, 3]]))
        # NumPy values are checked before anything runs.
        with pytest.raises(ValueError, match="finite values >= 0"):
            mdn_keras.sample(params, 2, 3, seed=0, **kwargs)


# ------------------------------------------------------------ 4. quantile levels


def np_cdf(logits, loc, scale, y):
    return float(np.sum(special.softmax(logits) * stats.norm.cdf(y, loc, scale)))


def np_quantile(logits, loc, scale, q):
    lo, hi = float(np.min(loc - 40 * scale)), float(np.max(loc + 40 * scale))
    return optimize.brentq(lambda y: np_cdf(logits, loc, scale, y) - q, lo, hi, xtol=1e-12)


def reference_quantiles(params, qs):
    """`(len(qs), *lead)` float64 quantiles, every level for every row."""
    logits, loc, scale = np_split(params.astype(np.float64), 1, params.shape[-1] // 3)
    lead = params.shape[:-1]
    out = np.zeros((len(qs), *lead))
    for i, q in enumerate(qs):
        for idx in np.ndindex(*lead):
            out[(i, *idx)] = np_quantile(logits[idx], loc[idx][:, 0], scale[idx][:, 0], q)
    return out


@pytest.mark.parametrize("rows", [2, 3])
def test_levels_of_shape_q_give_every_level_for_every_row(rng, rows):
    params = valid_params(rng, (rows,), 1, 3)
    qs = [0.1, 0.9]
    want = reference_quantiles(params, qs)
    for form in temperature_forms(qs):
        got = to_numpy(mdn_keras.Mixture(params, 1, 3).quantile(form))
        assert got.shape == (2, rows)
        np.testing.assert_allclose(got, want, atol=1e-4)
    scalar = to_numpy(mdn_keras.mixture_quantile(params, np.float32(0.9), 1, 3))
    assert scalar.shape == (rows,)
    np.testing.assert_allclose(scalar, want[1], atol=1e-4)
    lower, upper = mdn_keras.prediction_interval(params, np.array([0.8]), 1, 3)
    assert to_numpy(lower).shape == (1, rows)
    np.testing.assert_allclose(to_numpy(lower)[0], want[0], atol=1e-4)
    np.testing.assert_allclose(to_numpy(upper)[0], want[1], atol=1e-4)


def test_levels_per_row(rng):
    params = valid_params(rng, (2, 3), 1, 2)
    q = rng.uniform(0.05, 0.95, size=(1, 2, 3)).astype(F32)
    got = to_numpy(mdn_keras.mixture_quantile(params, q, 1, 2))
    assert got.shape == (1, 2, 3)
    for idx in np.ndindex(2, 3):
        want = reference_quantiles(params[idx][None], [float(q[(0, *idx)])])[0, 0]
        assert abs(got[(0, *idx)] - want) < 1e-4


@pytest.mark.parametrize("shape", [(2, 2), (3, 2), (2, 1), (1, 3, 1)])
def test_other_level_shapes_raise(rng, shape):
    params = valid_params(rng, (3,), 1, 2)
    q = np.full(shape, 0.5, F32)
    want = rf"\(Q, \*params.shape\[:-1\]\) = \(Q, 3\)\. Received: q.shape={re_shape(shape)}"
    with pytest.raises(ValueError, match=want):
        mdn_keras.mixture_quantile(params, q, 1, 2)
    with pytest.raises(ValueError, match=r"Received: coverage.shape=" + re_shape(shape)):
        mdn_keras.prediction_interval(params, ops.convert_to_tensor(q), 1, 2)


def test_invalid_tensor_levels_give_nan(rng):
    params = valid_params(rng, (3,), 1, 2)
    q = ops.convert_to_tensor(np.array([0.5, 0.0, -0.5, 1.0, np.nan], F32))
    got = to_numpy(compiled(lambda p, q: mdn_keras.mixture_quantile(p, q, 1, 2))(params, q))
    np.testing.assert_allclose(got[0], reference_quantiles(params, [0.5])[0], atol=1e-4)
    assert np.all(np.isnan(got[1:]))
    cov = ops.convert_to_tensor(np.array([0.5, -0.5, 1.5, np.nan], F32))
    lower, upper = compiled(lambda p, c: mdn_keras.prediction_interval(p, c, 1, 2))(params, cov)
    for end in (to_numpy(lower), to_numpy(upper)):
        assert np.all(np.isfinite(end[0])) and np.all(np.isnan(end[1:]))


# ------------------------------------------------------------ 5. small items


def test_elu_plus_one_with_min_scale_1e_7_is_keras_mdn_layers_activation(rng):
    raw = np.concatenate([rng.normal(0, 3, 200), [-30.0, -5.0, 0.0, 5.0]]).astype(F32)
    got = to_numpy(mdn_keras.scale_from_raw(raw, "elu_plus_one", min_scale=1e-7))
    r = raw.astype(np.float64)
    # keras-mdn-layer: elu(x) + 1 + keras.backend.epsilon(), epsilon = 1e-7.
    want = np.where(r > 0, r, np.expm1(np.minimum(r, 0))) + 1 + 1e-7
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: keras.layers.Conv1D(4, 3, padding="causal"),
        lambda: keras.layers.Conv1D(4, 1),
        lambda: keras.layers.GlobalAveragePooling1D(keepdims=True),
    ],
)
def test_make_step_model_refuses_time_mixing_layers(layer):
    x = keras.Input((None, 2))
    h = layer()(x)
    h = keras.layers.LSTM(4, return_sequences=True)(h)
    model = keras.Model(x, mdn_keras.MDN(2, 2)(h))
    with pytest.raises(ValueError, match=r"make_step_model cannot step a `\w+` layer.*Received"):
        mdn_keras.make_step_model(model)


def test_make_step_model_wraps_other_layer_failures():
    class NeedsTime(keras.layers.Layer):
        def call(self, x):
            if len(x.shape) != 3:
                raise ValueError("needs (batch, time, features)")
            return x

    x = keras.Input((None, 2))
    h = keras.layers.LSTM(4, return_sequences=True)(NeedsTime()(x))
    model = keras.Model(x, mdn_keras.MDN(2, 2)(h))
    with pytest.raises(ValueError, match=r"make_step_model cannot step layer .*NeedsTime"):
        mdn_keras.make_step_model(model)


def test_float64_policy_computes_in_float64_or_raises_on_jax_without_x64(rng):
    x = rng.normal(size=(4, 3))
    if BACKEND == "jax":
        import jax

        enabled = jax.config.read("jax_enable_x64")
        try:
            jax.config.update("jax_enable_x64", False)
            with pytest.raises(ValueError, match=r"jax_enable_x64.*Received: dtype=float64"):
                mdn_keras.MDN(2, 3, dtype="float64")
            jax.config.update("jax_enable_x64", True)
            out = mdn_keras.MDN(2, 3, dtype="float64")(x)
        finally:
            jax.config.update("jax_enable_x64", enabled)
    else:
        out = mdn_keras.MDN(2, 3, dtype="float64")(x)
    assert dtype_name(out) == "float64"
    assert math.isfinite(float(np.sum(to_numpy(out))))


# ------------------------------------------------------------ batches of no rows


@pytest.mark.parametrize("name", ["normal", "laplace", "student_t", "mvn_tril"])
@pytest.mark.parametrize("d", [1, 2])
def test_statistics_and_scores_take_a_batch_of_no_rows(rng, name, d):
    # Keras' max and min raise for a tensor with no elements (PyTorch;
    # TensorFlow eagerly) even where the reduced axes are not empty. A batch
    # of no rows gives results of no rows, of the trailing shape of any batch.
    k = 3
    size = mdn_keras.params_size(d, k, name)
    rows = rng.uniform(0.5, 1.5, (2, size)).astype(F32)  # valid for every family
    calls = {
        "mixture_mode": lambda p, y: mdn_keras.mixture_mode(p, d, k, component=name),
        "mixture_mean": lambda p, y: mdn_keras.mixture_mean(p, d, k, component=name),
        "mixture_variance": lambda p, y: mdn_keras.mixture_variance(p, d, k, component=name),
        "mixture_covariance": lambda p, y: mdn_keras.mixture_covariance(p, d, k, component=name),
        "most_probable_component_mean": lambda p, y: mdn_keras.most_probable_component_mean(
            p, d, k, component=name
        ),
        "log_prob": lambda p, y: mdn_keras.log_prob(p, y, d, k, component=name),
        "mdn_nll": lambda p, y: mdn_keras.mdn_nll(y, p, d, k, component=name),
        "marginal_cdf": lambda p, y: mdn_keras.marginal_cdf(p, y, d, k, component=name),
        "crps": lambda p, y: mdn_keras.crps(p, y, d, k, component=name),
        "energy_score": lambda p, y: mdn_keras.energy_score(p, y, d, k, component=name, seed=1),
        "pit": lambda p, y: mdn_keras.pit(p, y, d, k, component=name),
        "sample": lambda p, y: mdn_keras.sample(p, d, k, component=name, seed=1),
    }
    if d == 1:
        calls["mixture_quantile"] = lambda p, y: mdn_keras.mixture_quantile(
            p, 0.3, d, k, component=name
        )
        calls["prediction_interval"] = lambda p, y: mdn_keras.prediction_interval(
            p, 0.9, d, k, component=name
        )
        calls["mixture_cdf"] = lambda p, y: mdn_keras.mixture_cdf(p, y[:, 0], d, k, component=name)
    for label, call in calls.items():
        full = call(rows, np.zeros((2, d), F32))
        empty = call(rows[:0], np.zeros((0, d), F32))
        want = keras.tree.map_structure(lambda t: (0, *to_numpy(t).shape[1:]), full)
        got = keras.tree.map_structure(lambda t: to_numpy(t).shape, empty)
        assert got == want, (label, got, want)
