"""Keras metrics of the predicted mixture: values, weights, masks, compile/fit, saving."""

import keras
import numpy as np
import pytest
import scoringrules as sr
from scipy import optimize, special, stats

import mdn_keras
from mdn_keras import metrics
from reference import np_log_prob, np_split, random_params


def np_crps(params, y, d, k):
    """`(..., D)` CRPS of normal mixtures, scoringrules."""
    logits, loc, scale = np_split(params, d, k)
    w = special.softmax(logits, axis=-1)
    y = np.asarray(y, np.float64).reshape(*logits.shape[:-1], d)
    return np.stack(
        [
            sr.crps_mixnorm(y[..., j], loc[..., j], scale[..., j], w, backend="numpy")
            for j in range(d)
        ],
        axis=-1,
    )


def np_covered(params, y, d, k, coverage):
    """`(..., D)` 1.0 where y lies in the central interval, whose ends are found by brentq."""
    logits, loc, scale = np_split(params, d, k)
    w = special.softmax(logits, axis=-1)
    y = np.asarray(y, np.float64).reshape(*logits.shape[:-1], d)
    out = np.zeros(y.shape)
    for idx in np.ndindex(*y.shape):
        *row, j = idx
        row = tuple(row)

        def cdf(z, row=row, j=j):
            return np.sum(w[row] * stats.norm.cdf(z, loc[row][:, j], scale[row][:, j]))

        ends = [
            optimize.brentq(lambda z, q=q: cdf(z) - q, -100, 100, xtol=1e-12)
            for q in (0.5 - coverage / 2, 0.5 + coverage / 2)
        ]
        out[idx] = float(ends[0] <= y[idx] <= ends[1])
    return out


def np_mixture_mse(params, y, d, k):
    logits, loc, _ = np_split(params, d, k)
    w = special.softmax(logits, axis=-1)[..., None]
    mean = np.sum(w * loc, axis=-2)
    y = np.asarray(y, np.float64).reshape(mean.shape)
    return np.mean((y - mean) ** 2, axis=-1)


def all_metrics(d, k, component="normal"):
    return [
        metrics.NegativeLogLikelihood(d, k, component),
        metrics.CRPS(d, k, component),
        metrics.IntervalCoverage(d, k, component, coverage=0.8),
        metrics.MixtureMeanSquaredError(d, k, component),
    ]


def references(params, y, d, k):
    """Per-example float64 values, in the order of `all_metrics`."""
    return [
        -np_log_prob(params, y, d, k),
        np_crps(params, y, d, k).mean(-1),
        np_covered(params, y, d, k, 0.8).mean(-1),
        np_mixture_mse(params, y, d, k),
    ]


@pytest.mark.parametrize("d", [1, 2])
def test_metrics_are_weighted_means_of_their_references(d, rng):
    k, n = 3, 40
    params = random_params(rng, (n,), d, k)
    y = rng.normal(0, 2, size=(n, d)).astype("float32")
    weight = rng.uniform(0, 2, size=n).astype("float32")
    for metric, ref in zip(all_metrics(d, k), references(params, y, d, k), strict=True):
        metric.update_state(y[:25], params[:25], sample_weight=weight[:25])
        metric.update_state(y[25:], params[25:], sample_weight=weight[25:])
        want = np.sum(weight * ref) / np.sum(weight)
        np.testing.assert_allclose(float(metric.result()), want, rtol=2e-5, atol=2e-6)
        metric.reset_state()
        metric.update_state(y, params)
        np.testing.assert_allclose(float(metric.result()), ref.mean(), rtol=2e-5, atol=2e-6)


def test_one_dimensional_targets_without_their_last_axis(rng):
    k, n = 2, 16
    params = random_params(rng, (n,), 1, k)
    y = rng.normal(size=n).astype("float32")
    for metric in all_metrics(1, k):
        metric.update_state(y, params)
        with_axis = type(metric).from_config(metric.get_config())
        with_axis.update_state(y[:, None], params)
        np.testing.assert_allclose(float(metric.result()), float(with_axis.result()), rtol=1e-6)


def test_coverage_of_a_calibrated_model_is_its_nominal_level(rng):
    d, k, n = 2, 3, 4000
    params = np.repeat(random_params(rng, (1,), d, k), n, axis=0)
    y = keras.ops.convert_to_numpy(mdn_keras.sample(params, d, k, seed=2))
    for level in (0.5, 0.9):
        metric = metrics.IntervalCoverage(d, k, coverage=level)
        metric.update_state(y, params)
        # Binomial standard error of a mean of n * d indicators (positively
        # correlated only within a row, so below sqrt(2) times this).
        se = np.sqrt(level * (1 - level) / n)
        assert abs(float(metric.result()) - level) < 5 * se


def build_model(d, k, component="normal", weighted=False):
    """A masked sequence model; `weighted` passes the metrics as Keras' `weighted_metrics`."""
    model = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.Masking(0.0),
            keras.layers.Dense(8, activation="tanh"),
            mdn_keras.MDN(d, k, component=component),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=mdn_keras.MDNLoss(d, k, component=component),
        **{"weighted_metrics" if weighted else "metrics": all_metrics(d, k, component)},
    )
    return model


@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_metrics_apply_masks_and_sample_weights(weighted, rng):
    # Keras gives `sample_weight` to `weighted_metrics` only; masks apply to both.
    d, k = 2, 3
    model = build_model(d, k, weighted=weighted)
    x = rng.normal(size=(10, 6, 3)).astype("float32")
    y = rng.normal(size=(10, 6, d)).astype("float32")
    valid = np.ones((10, 6), bool)
    valid[:, 4:] = False  # padded steps: zero inputs, garbage targets
    valid[3, 1:] = False
    x[~valid] = 0.0
    y[~valid] = 1e3
    weight = rng.uniform(0.2, 3.0, size=(10, 6)).astype("float32")
    model.fit(x, y, epochs=1, batch_size=5, verbose=0)
    # One batch: on the PyTorch backend Keras' own weighted metrics (MeanSquaredError
    # included) drift from the weighted mean when evaluate() splits masked,
    # weighted data into several batches (Keras 3.15); the metrics are exact per batch.
    got = model.evaluate(x, y, sample_weight=weight, batch_size=10, verbose=0, return_dict=True)
    params = model.predict(x, verbose=0)
    w = (weight if weighted else 1.0) * valid
    for metric, ref in zip(all_metrics(d, k), references(params, y, d, k), strict=True):
        want = np.sum(w * ref) / np.sum(w)
        np.testing.assert_allclose(got[metric.name], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("component", ["normal", "laplace"])
def test_compiled_metrics_survive_saving_in_safe_mode(component, tmp_path, rng):
    d, k = 1, 2
    model = build_model(d, k, component)
    x = rng.normal(size=(8, 6, 3)).astype("float32")
    y = rng.normal(size=(8, 6, d)).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    after = restored.evaluate(x, y, verbose=0, return_dict=True)
    assert set(after) == set(before) >= {"nll", "crps", "interval_coverage", "mixture_mse"}
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6)


def test_config_round_trip_keeps_every_option():
    family = mdn_keras.families.StudentT(min_df=2.0)
    metric = metrics.IntervalCoverage(3, 4, family, coverage=0.75, name="cov75")
    config = keras.saving.serialize_keras_object(metric)
    clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(clone) is metrics.IntervalCoverage
    assert (clone.output_dim, clone.num_mixtures, clone.coverage, clone.name) == (
        3,
        4,
        0.75,
        "cov75",
    )
    assert clone.component == family


@pytest.mark.parametrize("coverage", [0.0, 1.0, 1.5, -0.1, True, "0.9", float("nan")])
def test_coverage_outside_the_unit_interval_is_rejected(coverage):
    with pytest.raises(ValueError, match=r"coverage.*\(0, 1\).*Received: coverage="):
        metrics.IntervalCoverage(1, 2, coverage=coverage)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_mixtures"):
        metrics.CRPS(1, 0)
    metric = metrics.CRPS(2, 3)
    with pytest.raises(ValueError, match=r"y.shape=\(4, 3\)"):
        metric.update_state(np.zeros((4, 3), "float32"), np.zeros((4, 15), "float32"))
