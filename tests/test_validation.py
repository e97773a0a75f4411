"""Bad input raises `ValueError` naming the expected and the received values (issue 4),
and the NaN policy: NaN in, NaN out for that entry, never hidden."""

import numpy as np
import pytest
from keras import ops

import mdn_keras
from reference import np_log_prob, random_params

F32 = "float32"


def zeros(*shape, dtype=F32):
    return np.zeros(shape, dtype)


# ------------------------------------------------------------ params_size, split, join


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, 3), r"positive integer. Received: output_dim=0"),
        ((2, -1), r"positive integer. Received: num_mixtures=-1"),
        ((True, 3), r"Received: output_dim=True"),
        ((2, 3.0), r"Received: num_mixtures=3.0"),
        (("2", 3), r"Received: output_dim='2'"),
    ],
)
def test_params_size_rejects_non_positive_ints(args, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.params_size(*args)


@pytest.mark.parametrize(
    "params,match",
    [
        (zeros(32, 24), r"= 3 \* \(2 \* 2 \+ 1\) = 15\. Received: params.shape=\(32, 24\)"),
        (zeros(32, 15, dtype="int32"), r"floating-point tensor. Received: params.dtype=int32"),
        (np.float32(1.0), r"= 15\. Received: params.shape=\(\)"),
    ],
)
def test_split_params_checks_dtype_and_last_axis(params, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.split_params(params, 2, 3)


def test_split_params_checks_its_sizes():
    with pytest.raises(ValueError, match=r"Received: output_dim=1.5"):
        mdn_keras.split_params(zeros(4, 15), 1.5, 3)


@pytest.mark.parametrize(
    "shapes,match",
    [
        (
            ((4, 3), (4, 3, 2), (4, 2, 2)),
            r"Received: logits.shape=\(4, 3\), loc.shape=\(4, 3, 2\), scale.shape=\(4, 2, 2\)",
        ),
        (
            ((4, 2), (4, 3, 2), (4, 3, 2)),
            r"logits.shape == \(\.\.\., K\).*Received: logits.shape=\(4, 2\)",
        ),
        (((3,), (3,), (3,)), r"Received: logits.shape=\(3,\), loc.shape=\(3,\)"),
    ],
)
def test_join_params_checks_shapes(shapes, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.join_params(*(zeros(*s) for s in shapes))


@pytest.mark.parametrize(
    "dtypes,match",
    [
        (("int32", "int32"), r"Received: loc.dtype=int32, scale.dtype=int32"),
        (("float16", F32), r"same dtype. Received: loc.dtype=float16, scale.dtype=float32"),
    ],
)
def test_join_params_checks_dtypes(dtypes, match):
    loc, scale = (zeros(4, 3, 2, dtype=d) for d in dtypes)
    with pytest.raises(ValueError, match=match):
        mdn_keras.join_params(zeros(4, 3), loc, scale)


# ------------------------------------------------------------ scale_from_raw


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"scale_activation": "relu"},
            r"one of \('softplus', 'exp', 'elu_plus_one'\)\. Received: scale_activation='relu'",
        ),
        ({"min_scale": 0.0}, r"finite number > 0\. Received: min_scale=0.0"),
        ({"min_scale": -1e-4}, r"Received: min_scale=-0.0001"),
        ({"min_scale": float("nan")}, r"Received: min_scale=nan"),
        ({"min_scale": True}, r"Received: min_scale=True"),
        ({"max_scale": 1e-5}, r"> min_scale \(0.0001\)\. Received: max_scale=1e-05"),
        ({"max_scale": float("inf")}, r"Received: max_scale=inf"),
    ],
)
def test_scale_from_raw_checks_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.scale_from_raw(zeros(4, 3), **kwargs)


@pytest.mark.parametrize("activation", ["softplus", "exp", "elu_plus_one"])
def test_scale_from_raw_rejects_integer_input(activation):
    # Before this check the backends disagreed (JAX promoted, TF and torch raised
    # their own errors), so the check is here, not left to the backend.
    with pytest.raises(ValueError, match=r"floating-point tensor. Received: raw.dtype=int64"):
        mdn_keras.scale_from_raw(np.arange(3, dtype="int64"), activation)


def test_scale_from_raw_accepts_python_floats():
    out = ops.convert_to_numpy(mdn_keras.scale_from_raw([0.0, -1e6], "softplus", 1e-3))
    np.testing.assert_allclose(out, [np.log(2) + 1e-3, 1e-3], rtol=1e-6)


# ------------------------------------------------------------ log_prob, component_log_prob, mdn_nll


@pytest.mark.parametrize("fn", [mdn_keras.log_prob, mdn_keras.component_log_prob])
@pytest.mark.parametrize(
    "params,y,match",
    [
        (zeros(32, 24), zeros(32, 2), r"= 15\. Received: params.shape=\(32, 24\)"),
        (zeros(32, 15, dtype="int32"), zeros(32, 2), r"Received: params.dtype=int32"),
        (
            zeros(32, 15),
            zeros(32, 3),
            r"\(\.\.\., 2\).*Received: y.shape=\(32, 3\), params.shape=\(32, 15\)",
        ),
        (
            zeros(32, 15),
            zeros(16, 2),
            r"broadcast.*Received: y.shape=\(16, 2\), params.shape=\(32, 15\)",
        ),
        (zeros(32, 15), zeros(32), r"Received: y.shape=\(32,\)"),
    ],
)
def test_density_functions_check_shapes_and_dtypes(fn, params, y, match):
    with pytest.raises(ValueError, match=match):
        fn(params, y, 2, 3)


def test_density_functions_check_sizes():
    with pytest.raises(ValueError, match=r"Received: num_mixtures=0"):
        mdn_keras.log_prob(zeros(4, 3), zeros(4, 1), 1, 0)


def test_mdn_nll_names_the_received_prediction_shape():
    with pytest.raises(ValueError, match=r"= 9\. Received: params.shape=\(32, 24\)"):
        mdn_keras.mdn_nll(zeros(32, 1), zeros(32, 24), 1, 3)
    with pytest.raises(
        ValueError, match=r"Received: y_true.shape=\(32, 2\), y_pred.shape=\(32, 9\)"
    ):
        mdn_keras.mdn_nll(zeros(32, 2), zeros(32, 9), 1, 3)


# ------------------------------------------------------------ MDNLoss


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"output_dim": 0, "num_mixtures": 3}, r"Received: output_dim=0"),
        ({"output_dim": 1, "num_mixtures": "3"}, r"Received: num_mixtures='3'"),
        (
            {"output_dim": 1, "num_mixtures": 3, "reduction": "avg"},
            r"Expected one of .*Received: reduction=avg",
        ),
    ],
)
def test_mdn_loss_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.MDNLoss(**kwargs)


def test_mdn_loss_checks_prediction_and_target_shapes():
    loss = mdn_keras.MDNLoss(2, 3)
    with pytest.raises(ValueError, match=r"Received: params.shape=\(32, 24\)"):
        loss(zeros(32, 2), zeros(32, 24))
    with pytest.raises(
        ValueError, match=r"Received: y_true.shape=\(32, 1\), y_pred.shape=\(32, 15\)"
    ):
        loss(zeros(32, 1), zeros(32, 15))


# ------------------------------------------------------------ MDN


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"output_dim": -2, "num_mixtures": 3}, r"positive integer. Received: output_dim=-2"),
        ({"output_dim": 2, "num_mixtures": None}, r"Received: num_mixtures=None"),
        (
            {"output_dim": 2, "num_mixtures": 3, "scale_activation": "exp2"},
            r"Received: scale_activation='exp2'",
        ),
        (
            {"output_dim": 2, "num_mixtures": 3, "min_scale": float("inf")},
            r"Received: min_scale=inf",
        ),
        (
            {"output_dim": 2, "num_mixtures": 3, "min_scale": 0.1, "max_scale": 0.1},
            r"> min_scale \(0.1\)\. Received: max_scale=0.1",
        ),
    ],
)
def test_mdn_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.MDN(**kwargs)


def test_mdn_checks_its_input():
    with pytest.raises(
        ValueError,
        match=r"last axis of the MDN input to be known. Received: input_shape=\(4, None\)",
    ):
        mdn_keras.MDN(1, 2).build((4, None))
    with pytest.raises(ValueError, match=r"expected min_ndim=1, found ndim=0"):
        mdn_keras.MDN(1, 2)(np.float32(1.0))
    layer = mdn_keras.MDN(1, 2)
    layer(zeros(4, 5))
    with pytest.raises(ValueError, match=r"value 5, but received input with shape \(4, 3\)"):
        layer(zeros(4, 3))


# ------------------------------------------------------------ sample


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"temperature": -1.0},
            r"`temperature` to be a finite number >= 0\. Received: temperature=-1.0",
        ),
        ({"temperature": np.float32(-0.5)}, r"Received: temperature=np.float32\(-0.5\)"),
        ({"temperature": float("inf")}, r"Received: temperature=inf"),
        ({"temperature": True}, r"Received: temperature=True"),
        (
            {"sigma_temperature": float("nan")},
            r"`sigma_temperature`.*Received: sigma_temperature=nan",
        ),
        ({"sigma_temperature": -2}, r"Received: sigma_temperature=-2"),
        (
            {"seed": 1.5},
            r"an int, a keras.random.SeedGenerator or None\. Received: seed=1.5 of type float",
        ),
        ({"seed": "7"}, r"Received: seed='7' of type str"),
        ({"seed": -1}, r"in \[0, 2\*\*32\)\. Received: seed=-1"),
        ({"seed": 2**32}, r"Received: seed=4294967296"),
    ],
)
def test_sample_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.sample(zeros(4, 15), 2, 3, **kwargs)


@pytest.mark.parametrize(
    "params,match",
    [
        (zeros(32, 24), r"Received: params.shape=\(32, 24\)"),
        (zeros(32, 15, dtype="int32"), r"Received: params.dtype=int32"),
    ],
)
def test_sample_checks_params(params, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.sample(params, 2, 3, seed=0)


def test_sample_accepts_the_seed_range_edges():
    for seed in (0, 2**32 - 1):
        out = ops.convert_to_numpy(
            mdn_keras.sample(random_params(np.random.default_rng(0), (4,), 2, 3), 2, 3, seed=seed)
        )
        assert out.shape == (4, 2) and np.all(np.isfinite(out))


# ------------------------------------------------------------ NaN policy


def test_nan_target_gives_nan_for_that_entry_only(rng):
    params = random_params(rng, (6,), 2, 3)
    y = rng.normal(size=(6, 2)).astype(F32)
    y[2, 1] = np.nan
    out = ops.convert_to_numpy(mdn_keras.log_prob(params, y, 2, 3))
    assert np.isnan(out[2])
    ok = np.arange(6) != 2
    np.testing.assert_allclose(out[ok], np_log_prob(params[ok], y[ok], 2, 3), rtol=1e-5, atol=1e-5)
    comp = ops.convert_to_numpy(mdn_keras.component_log_prob(params, y, 2, 3))
    assert np.all(np.isnan(comp[2])) and np.all(np.isfinite(comp[ok]))


def test_nan_params_give_nan_for_that_entry_only(rng):
    params = random_params(rng, (5,), 1, 2)
    params[3, 0] = np.nan  # one component mean of row 3
    out = ops.convert_to_numpy(mdn_keras.log_prob(params, np.zeros((5, 1), F32), 1, 2))
    assert np.isnan(out[3]) and np.sum(np.isnan(out)) == 1


def test_nan_target_is_never_hidden_by_the_loss(rng):
    params = random_params(rng, (8,), 1, 2)
    y = rng.normal(size=(8, 1)).astype(F32)
    y[5] = np.nan
    for reduction in ("sum_over_batch_size", "sum", "mean"):
        value = ops.convert_to_numpy(mdn_keras.MDNLoss(1, 2, reduction=reduction)(y, params))
        assert np.isnan(value), reduction
    per_example = ops.convert_to_numpy(mdn_keras.MDNLoss(1, 2, reduction="none")(y, params))
    assert np.isnan(per_example[5]) and np.sum(np.isnan(per_example)) == 1
    # A zero sample weight does not hide it either: 0 * NaN is NaN.
    weights = np.ones((8,), F32)
    weights[5] = 0.0
    assert np.isnan(ops.convert_to_numpy(mdn_keras.MDNLoss(1, 2)(y, params, sample_weight=weights)))


def test_missing_targets_recipe_from_the_docs(rng):
    """docs/reliability.md: replace NaN targets by any finite value and weight them 0."""
    params = random_params(rng, (8,), 1, 2)
    y = rng.normal(size=(8, 1)).astype(F32)
    y[[1, 5]] = np.nan
    missing = np.isnan(y[:, 0])
    weights = (~missing).astype(F32)
    y_filled = np.where(np.isnan(y), 0.0, y)
    loss = mdn_keras.MDNLoss(1, 2, reduction="mean_with_sample_weight")
    value = float(ops.convert_to_numpy(loss(y_filled, params, sample_weight=weights)))
    expected = -np.mean(np_log_prob(params[~missing], y[~missing], 1, 2))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
