"""The MDN layer: shapes, activations, models, saving, training, arguments."""

import os

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special

import mdn_keras
from backend_utils import to_numpy, value_and_grad
from mdn_keras.special import softplus
from reference import np_log_prob


@pytest.mark.parametrize("in_shape", [(8, 5), (4, 7, 5), (2, 3, 4, 5)])
def test_output_shape_for_ranks_2_3_4(in_shape):
    layer = mdn_keras.MDN(output_dim=3, num_mixtures=4)
    out = layer(np.random.default_rng(0).normal(size=in_shape).astype("float32"))
    assert tuple(out.shape) == (*in_shape[:-1], 4 * (2 * 3 + 1))
    assert layer.compute_output_shape(in_shape) == tuple(out.shape)
    symbolic = layer(keras.Input(in_shape[1:]))
    assert tuple(symbolic.shape) == (None, *in_shape[1:-1], 28)
    assert layer.compute_output_shape((None, *in_shape[1:])) == tuple(symbolic.shape)


def test_single_projection_and_scale_floor():
    layer = mdn_keras.MDN(2, 3, min_scale=1e-3)
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32") * 100
    out = to_numpy(layer(x))
    assert [tuple(w.shape) for w in layer.weights] == [(4, 15), (15,)]
    _, _, scale = (to_numpy(t) for t in mdn_keras.split_params(out, 2, 3))
    assert scale.min() >= 1e-3
    raw = x @ to_numpy(layer.kernel) + to_numpy(layer.bias)
    np.testing.assert_allclose(out[:, :6], raw[:, :6], rtol=1e-5, atol=1e-4)  # loc untouched
    np.testing.assert_allclose(out[:, 12:], raw[:, 12:], rtol=1e-5, atol=1e-4)  # logits untouched


@pytest.mark.parametrize(
    "activation,expected",
    [
        ("softplus", lambda r: np.logaddexp(0, r) + 1e-4),
        ("exp", lambda r: np.exp(0.5 * np.clip(r, 2 * np.log(1e-4), 2 * np.log(1e4)))),
        ("elu_plus_one", lambda r: np.where(r > 0, r, np.expm1(np.minimum(r, 0))) + 1 + 1e-4),
    ],
)
def test_scale_activations(activation, expected):
    raw = np.array([-1e6, -40.0, -20.0, -10.0, -3.0, -0.5, 0.0, 0.5, 3.0, 40.0, 1e6], "float64")
    got = to_numpy(mdn_keras.scale_from_raw(raw, activation))
    np.testing.assert_allclose(got, expected(raw), rtol=1e-5)
    assert np.all(got > 0) and np.all(np.isfinite(got))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_values_and_derivative_match_float64(dtype):
    # Its derivative is sigmoid(x) everywhere, 1/2 at exactly 0 (a zero
    # input with a zero bias), and neither side overflows.
    raw = np.array([-1e6, -100.0, -20.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 20.0, 100.0, 1e6], dtype)
    value, grad = value_and_grad(softplus, raw)
    x = raw.astype(np.float64)
    # JAX without jax_enable_x64 computes float64 input in float32.
    tol = 1e-13 if value.dtype == np.float64 else 1e-6
    tiny = np.finfo(value.dtype).tiny  # below it (subnormals) only absolute accuracy
    np.testing.assert_allclose(value, np.logaddexp(0.0, x), rtol=tol, atol=tiny)
    np.testing.assert_allclose(grad, special.expit(x), rtol=tol, atol=tiny)
    assert grad[raw == 0.0] == 0.5
    edge = to_numpy(softplus(ops.convert_to_tensor(np.array([np.inf, -np.inf, np.nan], dtype))))
    assert edge[0] == np.inf and edge[1] == 0.0 and np.isnan(edge[2])


def test_max_scale_caps_every_activation():
    raw = np.array([-5.0, 0.0, 50.0, 1e6], "float32")
    for activation in ("softplus", "exp", "elu_plus_one"):
        got = to_numpy(mdn_keras.scale_from_raw(raw, activation, min_scale=1e-2, max_scale=10.0))
        assert got.max() <= 10.0 and got.min() >= 1e-2


def build_sequential():
    return keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(16, activation="tanh"), mdn_keras.MDN(1, 3)]
    )


def build_functional():
    inp = keras.Input((1,))
    return keras.Model(inp, mdn_keras.MDN(1, 3)(keras.layers.Dense(16, activation="tanh")(inp)))


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(16, activation="tanh")
        self.head = mdn_keras.MDN(1, 3)

    def call(self, x):
        return self.head(self.hidden(x))


@pytest.mark.parametrize("build", [build_sequential, build_functional, Subclassed])
def test_works_in_every_model_style(build):
    keras.utils.set_random_seed(0)
    x = np.linspace(-1, 1, 64, dtype="float32")[:, None]
    y = np.sin(3 * x)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mdn_keras.MDNLoss(1, 3))
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    assert model.predict(x, verbose=0).shape == (64, 9)


def test_save_and_reload_with_safe_mode(tmp_path):
    keras.utils.set_random_seed(1)
    inp = keras.Input((3,))
    out = mdn_keras.MDN(
        2, 4, scale_activation="exp", min_scale=1e-3, max_scale=50.0, kernel_regularizer="l2"
    )(keras.layers.Dense(8)(inp))
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=mdn_keras.MDNLoss(2, 4, reduction="sum"))
    x = np.random.default_rng(2).normal(size=(10, 3)).astype("float32")
    path = os.path.join(tmp_path, "mdn.keras")
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    head = restored.layers[-1]
    assert isinstance(head, mdn_keras.MDN)
    assert (head.scale_activation, head.min_scale, head.max_scale) == ("exp", 1e-3, 50.0)
    loss = restored.loss
    assert isinstance(loss, mdn_keras.MDNLoss)
    assert (loss.output_dim, loss.num_mixtures, loss.reduction) == (2, 4, "sum")


def test_config_round_trip():
    layer = mdn_keras.MDN(
        2, 3, scale_activation="elu_plus_one", bias_initializer="ones", name="head"
    )
    clone = mdn_keras.MDN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def bishop_data(n, seed):
    """Bishop's inverse problem: x = y + 0.3 sin(2 pi y) + noise; predict y from x."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 1, size=(n, 1))
    x = y + 0.3 * np.sin(2 * np.pi * y) + rng.uniform(-0.1, 0.1, size=(n, 1))
    return x.astype("float32"), y.astype("float32")


def test_fit_learns_a_multimodal_answer():
    keras.utils.set_random_seed(3)
    x, y = bishop_data(2000, 0)
    xt, yt = bishop_data(500, 1)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(32, activation="tanh"),
            mdn_keras.MDN(1, 3),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mdn_keras.MDNLoss(1, 3))
    before = float(model.evaluate(xt, yt, verbose=0))
    model.fit(x, y, epochs=20, batch_size=100, verbose=0)
    after = float(model.evaluate(xt, yt, verbose=0))
    nll_ref = -np_log_prob(model.predict(xt, verbose=0), yt, 1, 3).mean()
    assert after == pytest.approx(nll_ref, rel=1e-4, abs=1e-4)
    assert after < before - 0.5
    assert after < -0.4, after


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_output_is_float32_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    try:
        inp = keras.Input((4,))
        out = mdn_keras.MDN(2, 3)(keras.layers.Dense(8)(inp))
        model = keras.Model(inp, out)
        got = model(np.ones((2, 4), "float32"))
        assert keras.backend.standardize_dtype(got.dtype) == "float32"
        assert model.layers[-1].compute_dtype == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"output_dim": 0, "num_mixtures": 3}, r"positive integer. Received: output_dim=0"),
        ({"output_dim": 2, "num_mixtures": 2.5}, r"Received: num_mixtures=2.5"),
        (
            {"output_dim": 2, "num_mixtures": 3, "scale_activation": "relu"},
            r"Received: scale_activation='relu'",
        ),
        ({"output_dim": 2, "num_mixtures": 3, "min_scale": 0.0}, r"Received: min_scale=0.0"),
        (
            {"output_dim": 2, "num_mixtures": 3, "max_scale": 1e-5},
            r"> min_scale.*Received: max_scale=1e-05",
        ),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.MDN(**kwargs)


def test_wrong_input_shape_raises():
    layer = mdn_keras.MDN(1, 2)
    layer(np.zeros((4, 5), "float32"))
    with pytest.raises(
        ValueError, match=r"expected axis -1 of input shape to have value 5.*\(4, 3\)"
    ):
        layer(np.zeros((4, 3), "float32"))


def test_mask_passes_through():
    inp = keras.Input((None, 2))
    masked = keras.layers.Masking(0.0)(inp)
    layer = mdn_keras.MDN(1, 2)
    x = np.ones((2, 3, 2), "float32")
    x[0, 2] = 0.0
    mask = to_numpy(keras.layers.Masking(0.0).compute_mask(x))
    assert layer.supports_masking
    np.testing.assert_array_equal(
        to_numpy(layer.compute_mask(x, ops.convert_to_tensor(mask))), mask
    )
    assert keras.Model(inp, layer(masked)).output_shape == (None, None, 6)


def test_get_loss_matches_head():
    loss = mdn_keras.MDN(3, 5).get_loss(reduction="none")
    assert (loss.output_dim, loss.num_mixtures, loss.reduction) == (3, 5, "none")


@pytest.mark.parametrize("min_elements", [0, 2**62], ids=["per_block", "one_product"])
@pytest.mark.parametrize("lead", [(), (6,), (2, 3)], ids=["rank1", "rank2", "rank3"])
@pytest.mark.parametrize("d", [2, 32])
def test_wide_heads_project_the_same_values_and_gradients(d, lead, min_elements, monkeypatch):
    # A wide output (D=32, K=5 after 16 inputs) is projected block by block
    # on TensorFlow, and on PyTorch from enough rows (`min_elements` sets
    # that; see `_projected_blocks`; each product there is one `addmm` over
    # the flattened leading axes): the same values as one product for inputs
    # of any rank, and (checked on PyTorch) the same kernel and bias
    # gradients as the float64 chain rule.
    monkeypatch.setattr(mdn_keras.layer, "TORCH_PER_BLOCK_MIN_ELEMENTS", min_elements)
    products = _count_products(monkeypatch)
    k = 5
    rng = np.random.default_rng(1)
    layer = mdn_keras.MDN(d, k)
    x = rng.normal(size=(*lead, 16)).astype("float32")
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))  # not the zeros
    out = layer(x)
    # D=32 saves copying (2 * 16 < 325), D=2 does not (2 * 16 > 25).
    per_block = {"tensorflow": d == 32, "torch": d == 32 and min_elements == 0}
    assert products == ([3] if per_block.get(keras.backend.backend(), False) else [1])
    assert tuple(out.shape) == (*lead, layer.params_size)
    raw = x.astype(np.float64) @ to_numpy(layer.kernel) + to_numpy(layer.bias)
    kd = k * d
    want = np.concatenate(
        [raw[..., :kd], np.logaddexp(0, raw[..., kd : 2 * kd]) + 1e-4, raw[..., 2 * kd :]], -1
    )
    np.testing.assert_allclose(to_numpy(out), want, rtol=1e-5, atol=1e-5)
    if keras.backend.backend() != "torch":
        return
    import torch

    weight = rng.normal(size=want.shape)
    kernel, bias = layer.kernel.value, layer.bias.value
    loss = (out * torch.tensor(weight, dtype=out.dtype)).sum()
    got_kernel, got_bias = torch.autograd.grad(loss, [kernel, bias])
    upstream = weight.copy()
    upstream[..., kd : 2 * kd] *= special.expit(raw[..., kd : 2 * kd])
    x2, up2 = x.reshape(-1, 16).astype(np.float64), upstream.reshape(-1, want.shape[-1])
    np.testing.assert_allclose(to_numpy(got_kernel), x2.T @ up2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(got_bias), up2.sum(0), rtol=1e-4, atol=1e-4)


def _count_products(monkeypatch):
    """A list whose one entry counts the products the next `MDN` call makes."""
    calls = [0]
    product = mdn_keras.layer._product

    def counted(*args):
        calls[0] += 1
        return product(*args)

    monkeypatch.setattr(mdn_keras.layer, "_product", counted)
    return calls


@pytest.mark.parametrize("extra_row", [0, 1], ids=["below", "at"])
def test_torch_projects_block_by_block_from_enough_rows(extra_row, monkeypatch):
    # D=32, K=5 after 16 inputs saves 325 - 2 * 16 = 293 copied values per
    # row: PyTorch multiplies block by block from 2**17 of them, TensorFlow
    # whenever some are saved, JAX never (XLA fuses either way).
    rows = -(-mdn_keras.layer.TORCH_PER_BLOCK_MIN_ELEMENTS // 293) - 1 + extra_row
    layer = mdn_keras.MDN(32, 5)
    x = np.random.default_rng(2).normal(size=(rows, 16)).astype("float32")
    layer.build(x.shape)
    products = _count_products(monkeypatch)
    layer(x)
    per_block = {"tensorflow": True, "torch": extra_row == 1}
    assert products == ([3] if per_block.get(keras.backend.backend(), False) else [1])


@pytest.mark.parametrize("rows", [7, 5000], ids=["one_product", "per_block"])
def test_float64_heads_compute_in_float64(rows):
    # A float64 head is float64 throughout (Keras' PyTorch `ops.matmul`
    # would compute the product in float32: errors ~1e-6); JAX refuses
    # float64 unless its 64-bit mode is on.
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            with pytest.raises(ValueError, match="jax_enable_x64"):
                mdn_keras.MDN(32, 5, dtype="float64")
            return
    rng = np.random.default_rng(3)
    layer = mdn_keras.MDN(32, 5, dtype="float64")
    x = rng.normal(size=(rows, 128))
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=layer.bias.shape))
    out = to_numpy(layer(ops.convert_to_tensor(x, "float64")))
    assert out.dtype == np.float64
    raw = x @ to_numpy(layer.kernel) + to_numpy(layer.bias)
    kd = 5 * 32
    np.testing.assert_allclose(out[:, :kd], raw[:, :kd], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[:, 2 * kd :], raw[:, 2 * kd :], rtol=0, atol=1e-12)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch.autocast")
@pytest.mark.parametrize("rows", [7, 5000], ids=["one_product", "per_block"])
def test_torch_autocast_leaves_the_head_in_float32(rows):
    # Under `torch.autocast` the products run in bfloat16 but the head's
    # output (scales, logits) stays float32, as the layer computes in float32.
    import torch

    layer = mdn_keras.MDN(32, 5)
    x = torch.tensor(np.random.default_rng(4).normal(size=(rows, 128)), dtype=torch.float32)
    want = to_numpy(layer(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(out), want, rtol=0.05, atol=0.05)
