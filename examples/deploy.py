"""Train a small MDN, export it to SavedModel, TFLite and ONNX, and sample in each runtime.

The exported model takes `x` and uniform noise `u` and returns a draw from
p(y | x) (`MixtureSample(noise_inputs=True)`), so no runtime needs random
ops: TFLite runs it with builtin ops only. Each runtime is fed the same
noise; their draws must equal Keras' own, and their statistics match.

    KERAS_BACKEND=tensorflow python examples/deploy.py   # all three formats
    KERAS_BACKEND=jax python examples/deploy.py          # SavedModel and ONNX
    KERAS_BACKEND=torch python examples/deploy.py        # ONNX

Needs the `export` extra (`pip install "mdn_keras[export]"`) and TensorFlow
for the SavedModel and TFLite runtimes.
"""

import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mdn_keras  # noqa: E402

D, K = 1, 5
BACKEND = keras.backend.backend()


def train() -> keras.Model:
    """Bishop's inverse problem: x = y + 0.3 sin(2 pi y) + noise, predict y from x."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, size=(3000, 1)).astype("float32")
    x = (y + 0.3 * np.sin(2 * np.pi * y) + rng.uniform(-0.1, 0.1, size=y.shape)).astype("float32")
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(32, activation="tanh"), mdn_keras.MDN(D, K)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mdn_keras.MDNLoss(D, K))
    model.fit(x, y, batch_size=128, epochs=60, verbose=0)
    return model


def sampler(head: keras.Model) -> keras.Model:
    x = keras.Input((1,), name="x")
    u = keras.Input((mdn_keras.noise_size(D, K),), name="u")
    draw = mdn_keras.MixtureSample(D, K, noise_inputs=True)([head(x), u])
    return keras.Model([x, u], draw)


def run_saved_model(path: str, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    return np.asarray(loaded.serve([x, u]))


def run_litert(path: str, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(o.startswith("Flex") for o in ops), ops
    interpreter.allocate_tensors()
    signature = next(iter(interpreter._get_full_signature_list().values()))
    (out_index,) = signature["outputs"].values()
    draws = []
    for i in range(len(x)):  # the converted graph has batch 1
        interpreter.set_tensor(signature["inputs"]["x"], x[i : i + 1])
        interpreter.set_tensor(signature["inputs"]["u"], u[i : i + 1])
        interpreter.invoke()
        draws.append(interpreter.get_tensor(out_index)[0])
    return np.stack(draws)


def run_onnx(path: str, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return np.asarray(session.run(None, dict(zip(names, [x, u], strict=True)))[0])


def row(draws: np.ndarray) -> str:
    stats = (draws.mean(), draws.std(), *np.quantile(draws, [0.1, 0.5, 0.9]))
    return " ".join(f"{v:8.4f}" for v in stats)


def main() -> None:
    head = train()
    model = sampler(head)
    n = 2000
    x = np.full((n, 1), 0.5, "float32")  # p(y | x = 0.5) is multimodal
    u = np.random.default_rng(1).random((n, mdn_keras.noise_size(D, K))).astype("float32")
    keras_draws = keras.ops.convert_to_numpy(model([x, u]))
    formats = {"onnx": ("model.onnx", run_onnx)}
    if BACKEND in ("tensorflow", "jax"):
        formats["tf_saved_model"] = ("saved", run_saved_model)
    if BACKEND == "tensorflow":
        formats["litert"] = ("model.tflite", run_litert)
    print(f"backend {BACKEND}; {n} draws from p(y | x=0.5) per runtime, the same noise")
    print(f"{'runtime':16s} {'mean':>8s} {'std':>8s} {'q10':>8s} {'q50':>8s} {'q90':>8s} max|diff|")
    print(f"{'keras':16s} {row(keras_draws)}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, (name, run) in formats.items():
            path = os.path.join(tmp, name)
            model.export(path, format=fmt, verbose=False)
            draws = run(path, x, u).reshape(keras_draws.shape)
            diff = float(np.max(np.abs(draws - keras_draws)))
            print(f"{fmt:16s} {row(draws)} {diff:.1e}")
            assert diff < 1e-4, f"{fmt} draws differ from Keras' by {diff}"
    print("All runtimes agree.")


if __name__ == "__main__":
    main()
