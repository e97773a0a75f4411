"""Issue 11: `MixtureSample` in models, saving, and `model.export` of a trained
MDN to tf_saved_model, TFLite (stock interpreter, builtin ops only) and ONNX.

One small trained model per backend (module-scoped); one export per format.
Backend/format pairs Keras does not support have their errors pinned.
"""

import os

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

import mdn_keras
from backend_utils import to_numpy

D, K = 1, 3
NS = mdn_keras.noise_size(D, K)


class Stat(keras.layers.Layer):
    """Wraps a statistic of (params, other) for a functional test model."""

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def call(self, inputs):
        return self.fn(*inputs)

    def compute_output_shape(self, shapes):
        return (shapes[0][0],)


@pytest.fixture(scope="module")
def trained():
    """A regression MDN trained briefly, and data to feed it."""
    keras.utils.set_random_seed(0)
    x_in = keras.Input((2,), name="x")
    hidden = keras.layers.Dense(16, activation="tanh")(x_in)
    params = mdn_keras.MDN(D, K)(hidden)
    head = keras.Model(x_in, params)
    head.compile(optimizer="adam", loss=mdn_keras.MDNLoss(D, K))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype("float32")
    y = (np.sin(x[:, :1]) + 0.1 * rng.normal(size=(256, 1))).astype("float32")
    head.fit(x, y, epochs=2, verbose=0)
    return head, x, y


@pytest.fixture(scope="module")
def deploy_model(trained):
    """Every builtin-op output in one model: params, mean, log_prob, cdf, quantile, draw."""
    head, x, y = trained
    x_in = keras.Input((2,), name="x")
    y_in = keras.Input((1,), name="y")
    q_in = keras.Input((), name="q")
    u_in = keras.Input((NS,), name="u")
    params = head(x_in)
    outputs = {
        "params": params,
        "mean": Stat(lambda p, _: mdn_keras.mixture_mean(p, D, K)[..., 0])([params, y_in]),
        "log_prob": Stat(lambda p, t: mdn_keras.log_prob(p, t, D, K))([params, y_in]),
        "cdf": Stat(lambda p, t: mdn_keras.portable_cdf(p, t, D, K))([params, y_in]),
        # One level per row: (1, batch) levels by the (Q, *params.shape[:-1]) rule.
        "quantile": Stat(
            lambda p, q: mdn_keras.portable_quantile(p, ops.expand_dims(q, 0), D, K)[0]
        )([params, q_in]),
        "draw": mdn_keras.MixtureSample(D, K, noise_inputs=True)([params, u_in]),
    }
    model = keras.Model([x_in, y_in, q_in, u_in], list(outputs.values()))
    rng = np.random.default_rng(1)
    feed = [
        x[:8],
        y[:8],
        rng.uniform(0.05, 0.95, size=8).astype("float32"),
        rng.random((8, NS)).astype("float32"),
    ]
    want = [to_numpy(t) for t in model(feed)]
    return model, list(outputs), feed, want


def check_outputs(names, got, want):
    for name, g, w in zip(names, got, want, strict=True):
        np.testing.assert_allclose(np.reshape(g, w.shape), w, rtol=1e-4, atol=1e-4, err_msg=name)


# --- the layer ------------------------------------------------------------


def test_mixture_sample_layer_in_sequential_and_after_load(tmp_path, trained):
    head, x, _ = trained
    model = keras.Sequential([head, mdn_keras.MixtureSample(D, K, seed=3)])
    first, second = to_numpy(model(x[:64])), to_numpy(model.predict(x[:64], verbose=0))
    assert first.shape == (64, D) and np.all(np.isfinite(first))
    assert not np.allclose(first, second)  # the layer's generator advances
    path = os.path.join(tmp_path, "sampler.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    layer = loaded.layers[-1]
    assert isinstance(layer, mdn_keras.MixtureSample)
    assert layer.get_config() == model.layers[-1].get_config()
    assert to_numpy(loaded.predict(x[:64], verbose=0)).shape == (64, D)


def test_mixture_sample_layer_draws_from_the_mixture():
    # One fixed mixture per row: the layer's draws pass the KS test.
    loc, scale, logits = (
        np.array([-2.0, 0.5, 3.0]),
        np.array([0.5, 0.3, 1.0]),
        np.log([0.5, 0.3, 0.2]),
    )
    params = np.tile(np.concatenate([loc, scale, logits]).astype("float32"), (20000, 1))
    draws = to_numpy(mdn_keras.MixtureSample(1, 3, seed=5)(params))[:, 0].astype("float64")
    probs = np.exp(logits)

    def cdf(v):
        return np.sum(probs * stats.norm.cdf((np.asarray(v)[..., None] - loc) / scale), -1)

    assert stats.kstest(draws, cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": -1.0}, r"`temperature`.*Received: temperature=-1.0"),
        ({"sigma_temperature": "x"}, r"`sigma_temperature`.*Received: sigma_temperature='x'"),
        ({"seed": -1}, r"`seed`.*Received: seed=-1"),
        ({"noise_inputs": 1}, r"`noise_inputs`.*Received: noise_inputs=1"),
        ({"output_dim": 0}, r"output_dim.*Received: output_dim=0"),
    ],
)
def test_mixture_sample_layer_checks_arguments(kwargs, match):
    args = {"output_dim": 1, "num_mixtures": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        mdn_keras.MixtureSample(**args)


# --- export -----------------------------------------------------------------


@pytest.mark.tensorflow_only
def test_export_tf_saved_model_on_tensorflow(tmp_path, deploy_model, trained):
    check_tf_saved_model(tmp_path, deploy_model, trained)


@pytest.mark.jax_only
@pytest.mark.needs("tensorflow")
def test_export_tf_saved_model_on_jax(tmp_path, deploy_model, trained):
    check_tf_saved_model(tmp_path, deploy_model, trained)


def check_tf_saved_model(tmp_path, deploy_model, trained):
    import tensorflow as tf

    model, names, feed, want = deploy_model
    path = os.path.join(tmp_path, "saved")
    model.export(path, format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(path)  # keep a reference: its variables live on it
    check_outputs(names, loaded.serve(feed), want)
    # A random MixtureSample output exports too, and the served draws advance.
    head, x, _ = trained
    sampler = keras.Sequential([head, mdn_keras.MixtureSample(D, K, seed=1)])
    sampler(x[:2])
    spath = os.path.join(tmp_path, "sampler")
    sampler.export(spath, format="tf_saved_model", verbose=False)
    loaded_sampler = tf.saved_model.load(spath)
    a = np.asarray(loaded_sampler.serve(x[:200]))
    b = np.asarray(loaded_sampler.serve(x[:200]))
    assert a.shape == (200, D) and np.all(np.isfinite(a)) and not np.allclose(a, b)
    mean = to_numpy(mdn_keras.mixture_mean(head(x[:200]), D, K))
    sd = to_numpy(mdn_keras.mixture_stddev(head(x[:200]), D, K))
    assert abs(np.mean((a - mean) / sd)) < 4 / np.sqrt(200)


@pytest.mark.torch_only
@pytest.mark.needs("tensorflow")
def test_export_tf_saved_model_on_torch_fails_in_torch_export(tmp_path, trained):
    # Keras 3.15 traces the model with torch.export, whose dynamic-shape spec
    # does not match a functional model's inputs (and would then need torch_xla).
    import torch

    head, _, _ = trained
    with pytest.raises(torch._dynamo.exc.UserError, match=r"dynamic_shapes"):
        head.export(os.path.join(tmp_path, "saved"), format="tf_saved_model", verbose=False)


def tflite_op_names(path):
    """The stock interpreter (no Flex delegate), allocated, and the names of the
    ops in the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    names = {op["op_name"] for op in interpreter._get_ops_details()}
    interpreter.allocate_tensors()  # after: the default XNNPack delegate adds a DELEGATE node
    return interpreter, names


@pytest.mark.tensorflow_only
def test_export_litert_runs_with_builtin_ops_only(tmp_path, deploy_model):
    import tensorflow as tf

    model, names, feed, want = deploy_model
    path = os.path.join(tmp_path, "model.tflite")
    # Builtin ops only: the converter fails rather than add Flex ops.
    model.export(
        path,
        format="litert",
        verbose=False,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
    )
    interpreter, op_names = tflite_op_names(path)
    assert not any(name.startswith("Flex") or name in ("CUSTOM", "DELEGATE") for name in op_names)
    signature = next(iter(interpreter._get_full_signature_list().values()))
    in_map, out_map = signature["inputs"], signature["outputs"]  # name -> tensor index
    by_name = dict(zip(["x", "y", "q", "u"], feed, strict=True))
    assert sorted(in_map) == sorted(by_name)  # the signature keeps the Input names
    outputs = sorted(out_map, key=lambda k: int(k.rsplit("_", 1)[-1]))  # output_0, ...
    # One row per call at the converted batch of 1, without a resize (XNNPack
    # cannot re-plan this graph's shapes at a new batch).
    rows = []
    for i in range(len(feed[0])):
        for name, value in by_name.items():
            interpreter.set_tensor(in_map[name], value[i : i + 1])
        interpreter.invoke()
        rows.append([interpreter.get_tensor(out_map[name]) for name in outputs])
    got = [np.concatenate([np.reshape(r[j], (1, -1)) for r in rows]) for j in range(len(names))]
    check_outputs(names, got, want)


@pytest.mark.tensorflow_only
def test_export_litert_of_random_sampling_needs_flex_ops(tmp_path, trained):
    import tensorflow as tf

    head, x, _ = trained
    sampler = keras.Sequential([head, mdn_keras.MixtureSample(D, K, seed=1)])
    sampler(x[:2])
    with pytest.raises(Exception, match=r"StatelessRandomUniform"):
        sampler.export(
            os.path.join(tmp_path, "s.tflite"),
            format="litert",
            verbose=False,
            target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
        )


@pytest.mark.jax_only
def test_export_litert_on_jax_is_refused(tmp_path, trained):
    head, _, _ = trained
    with pytest.raises(ValueError, match=r"TensorFlow or PyTorch backend"):
        head.export(os.path.join(tmp_path, "m.tflite"), format="litert", verbose=False)


@pytest.mark.torch_only
def test_export_litert_on_torch_names_the_missing_package(tmp_path, trained):
    # Keras converts PyTorch models with litert-torch, which the `export` extra
    # leaves out (it pins its own torch stack).
    head, _, _ = trained
    with pytest.raises(ImportError, match=r"litert-torch"):
        head.export(os.path.join(tmp_path, "m.tflite"), format="litert", verbose=False)


# Keras exports ONNX through tf2onnx on TensorFlow and JAX (via jax2tf), and
# through torch.onnx (onnxscript) on PyTorch.
ONNX_NEEDS = (
    ("onnxruntime", "onnxscript")
    if keras.backend.backend() == "torch"
    else ("onnxruntime", "tensorflow", "tf2onnx")
)


@pytest.mark.needs(*ONNX_NEEDS)
def test_export_onnx(tmp_path, deploy_model):
    import onnxruntime

    model, names, feed, want = deploy_model
    path = os.path.join(tmp_path, "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    check_outputs(names, session.run(None, dict(zip(inputs, feed, strict=True))), want)


@pytest.mark.torch_only
@pytest.mark.parametrize("rows", [8, 500], ids=["one_product", "per_block"])
def test_torch_export_traces_a_head_whose_weights_require_grad(rows):
    # `torch.export` traces with tensors that have no storage: the layer then
    # keeps no blocks for the loss (`concat_last`), and the exported program
    # gives the eager values.
    import torch

    model = keras.Sequential([keras.Input((16,)), mdn_keras.MDN(32, 5)])
    x = torch.tensor(np.random.default_rng(5).normal(size=(rows, 16)), dtype=torch.float32)
    assert torch.is_grad_enabled() and model.layers[-1].kernel.value.requires_grad
    program = torch.export.export(model, (x,))
    np.testing.assert_allclose(
        to_numpy(program.module()(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )
