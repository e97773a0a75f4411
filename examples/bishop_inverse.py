"""Bishop's inverse problem: one x, up to three right answers.

Data: x = y + 0.3 sin(2 pi y) + noise with y ~ U(0, 1). Predicting y from x is
multi-valued (three branches in the middle of the range): a mean-squared-error
network averages the branches; an MDN learns all three.

Trains an MDN (K=3), prints the test NLL beside a single Gaussian (K=1), and
writes a PNG with the data, samples from the model and the predicted density.

    python examples/bishop_inverse.py [--epochs 60] [--out outputs/bishop_inverse.png]

Runs on KERAS_BACKEND (JAX if unset).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mdn_keras  # noqa: E402


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.0, 1.0, size=(n, 1))
    x = y + 0.3 * np.sin(2 * np.pi * y) + rng.uniform(-0.1, 0.1, size=(n, 1))
    return x.astype("float32"), y.astype("float32")


def build(num_mixtures: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            mdn_keras.MDN(output_dim=1, num_mixtures=num_mixtures),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=mdn_keras.MDNLoss(1, num_mixtures))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description="Bishop's inverse problem with an MDN.")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="outputs/bishop_inverse.png")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x, y = make_data(4000, seed=0)
    x_test, y_test = make_data(1000, seed=1)
    start = time.perf_counter()
    results = {}
    models = {}
    for k in (1, 3):
        models[k] = build(k)
        models[k].fit(x, y, epochs=args.epochs, batch_size=128, verbose=0)
        results[k] = float(models[k].evaluate(x_test, y_test, verbose=0))
    print(
        f"backend: {keras.backend.backend()}   training time: {time.perf_counter() - start:.1f} s"
    )
    print("test NLL (nats per point, lower is better)")
    print(f"  single Gaussian (K=1): {results[1]:8.4f}")
    print(f"  MDN (K=3):             {results[3]:8.4f}")

    model = models[3]
    grid = np.linspace(x.min(), x.max(), 200, dtype="float32")[:, None]
    params = model.predict(grid, verbose=0)
    samples = keras.ops.convert_to_numpy(mdn_keras.sample(params, 1, 3, seed=0))
    ys = np.linspace(-0.1, 1.1, 240, dtype="float32")
    density = np.exp(
        keras.ops.convert_to_numpy(mdn_keras.log_prob(params[:, None, :], ys[None, :, None], 1, 3))
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    axes[0].scatter(x[:1500, 0], y[:1500, 0], s=3, alpha=0.3, label="training data")
    axes[0].scatter(grid[:, 0], samples[:, 0], s=6, c="C3", label="samples from the MDN")
    axes[0].set(xlabel="x", ylabel="y", title="Data and MDN samples (K=3)")
    axes[0].legend(loc="upper left")
    axes[1].imshow(
        density.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmax=np.percentile(density, 98),
        extent=(grid[0, 0], grid[-1, 0], ys[0], ys[-1]),
    )
    axes[1].set(xlabel="x", title="Predicted density p(y | x)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
