"""Bishop's inverse problem: an MDN's predicted density, mean, mode and 90% interval.

The forward map `x = y + 0.3 sin(2 pi y) + noise` (y uniform on [0, 1]) is
one-to-one, but its inverse is not: for x between about 0.35 and 0.65 three
values of y are plausible. A network trained with squared error predicts the
conditional mean, which falls between the branches where no data lie; an MDN
predicts the whole conditional density.

The script trains `Dense -> Dense -> MDN(output_dim=1, num_mixtures=5)` to
predict y from x, wraps the outputs on a grid of x in `mdn_keras.Mixture`, and

* plots the density `p(y | x)` as an image, with the mixture mean, the mode
  and the central 90% interval over the training data,
* prints the test negative log-likelihood, how often the 90% interval covers
  held-out y, and the log-density at the mean versus at the mode.

Run:  python examples/distributions_demo.py [--out outputs/distributions_demo.png]
The backend is `KERAS_BACKEND` (JAX when unset).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mdn_keras  # noqa: E402

OUTPUT_DIM, NUM_MIXTURES = 1, 5


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`(x, y)` of shape `(n, 1)` each: y ~ U(0, 1), x = y + 0.3 sin(2 pi y) + U(-0.1, 0.1)."""
    y = rng.uniform(0.0, 1.0, size=(n, 1))
    x = y + 0.3 * np.sin(2.0 * np.pi * y) + rng.uniform(-0.1, 0.1, size=(n, 1))
    return x.astype("float32"), y.astype("float32")


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(32, activation="tanh"),
            mdn_keras.MDN(OUTPUT_DIM, NUM_MIXTURES),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/distributions_demo.png")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_data(4000, rng)
    x_test, y_test = make_data(2000, rng)

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss=mdn_keras.MDNLoss(OUTPUT_DIM, NUM_MIXTURES)
    )
    start = time.time()
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=0)
    print(
        f"backend={keras.backend.backend()}: trained {args.epochs} epochs "
        f"in {time.time() - start:.1f} s"
    )

    head = model.layers[-1]
    test = head.mixture(model.predict(x_test, batch_size=1000, verbose=0))
    nll = -float(np.mean(keras.ops.convert_to_numpy(test.log_prob(y_test))))
    lower, upper = (keras.ops.convert_to_numpy(t) for t in test.interval(0.9))
    covered = float(np.mean((y_test[:, 0] >= lower) & (y_test[:, 0] <= upper)))
    at_mean = keras.ops.convert_to_numpy(test.log_prob(test.mean()))
    at_mode = keras.ops.convert_to_numpy(test.log_prob(test.mode()))
    middle = (x_test[:, 0] > 0.4) & (x_test[:, 0] < 0.6)
    print(f"test NLL: {nll:.3f} nats")
    print(
        f"90% interval: covers {100 * covered:.1f}% of test targets, "
        f"mean width {np.mean(upper - lower):.3f}"
    )
    print(
        "mean log-density at the mixture mean / mode, 0.4 < x < 0.6: "
        f"{np.mean(at_mean[middle]):.2f} / {np.mean(at_mode[middle]):.2f}"
    )

    # The density on a grid: one Mixture per x column, evaluated at every y row.
    x_grid = np.linspace(-0.1, 1.1, 240, dtype="float32")[:, None]
    y_grid = np.linspace(-0.15, 1.15, 260, dtype="float32")
    grid = head.mixture(model.predict(x_grid, verbose=0))
    density = np.exp(keras.ops.convert_to_numpy(grid.log_prob(y_grid[:, None, None])))
    mean = keras.ops.convert_to_numpy(grid.mean())[:, 0]
    mode = keras.ops.convert_to_numpy(grid.mode())[:, 0]
    lo, hi = (keras.ops.convert_to_numpy(t) for t in grid.interval(0.9))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.imshow(
        density,
        norm=matplotlib.colors.PowerNorm(0.5, vmin=0.0, vmax=np.quantile(density, 0.995)),
        origin="lower",
        aspect="auto",
        extent=(x_grid[0, 0], x_grid[-1, 0], y_grid[0], y_grid[-1]),
        cmap="Blues",
    )
    ax.scatter(x_train[:1000, 0], y_train[:1000, 0], s=2, c="k", alpha=0.3, label="training data")
    ax.plot(x_grid[:, 0], mean, c="tab:orange", lw=2, label="mixture mean")
    ax.plot(x_grid[:, 0], mode, ".", c="tab:red", ms=3, label="mode")
    ax.plot(x_grid[:, 0], lo, "--", c="tab:green", lw=1.5, label="90% interval")
    ax.plot(x_grid[:, 0], hi, "--", c="tab:green", lw=1.5)
    ax.set(xlabel="x", ylabel="y", title=f"p(y | x) of an MDN with K={NUM_MIXTURES}")
    ax.legend(loc="upper left", fontsize=8)
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
