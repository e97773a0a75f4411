"""Outliers in the targets: Gaussian vs Student-t vs Laplace components.

Data: x ~ U(-1, 1), y = sin(3 x) + 0.1 noise, and 8% of the *training*
targets are replaced by glitches: the clean value shifted by 1.5 to 5 (up
with probability 0.8, down otherwise), as a sensor that sometimes reads far
too high. The held-out test set is clean.

Trains the same network with `component="normal"`, `"laplace"` and
`"student_t"` heads, with K=1 and K=2 components, and prints for each

* the held-out NLL of the clean test set (nats per point),
* the RMSE against the clean function sin(3 x) of the fitted conditional
  mean (`mdn_keras.mixture_mean`) and of the conditional median
  (`mdn_keras.mixture_quantile(params, 0.5, 1, K, component=...)`).

The floor of the NLL is the true training density at the clean points
(0.92 times the clean noise density: the glitches put no mass there). A
Gaussian mean is the mean of the contaminated data, pulled towards the
glitches; the location of a Student-t or Laplace component is not. Writes a
PNG with the fitted means over the training data.

    python examples/heavy_tails.py [--epochs 150] [--out outputs/heavy_tails.png]

Runs on KERAS_BACKEND (JAX if unset).
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mdn_keras  # noqa: E402

NOISE = 0.1
OUTLIER_RATE = 0.08
FAMILIES = ("normal", "laplace", "student_t")


def clean(x: np.ndarray) -> np.ndarray:
    return np.sin(3.0 * x)


def make_data(n: int, seed: int, outliers: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(x, y, is_outlier)`, each `(n, 1)`."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    y = clean(x) + NOISE * rng.normal(size=(n, 1))
    glitch = rng.uniform(size=(n, 1)) < (OUTLIER_RATE if outliers else 0.0)
    sign = np.where(rng.uniform(size=(n, 1)) < 0.8, 1.0, -1.0)
    y = np.where(glitch, clean(x) + sign * rng.uniform(1.5, 5.0, size=(n, 1)), y)
    return x.astype("float32"), y.astype("float32"), glitch


def training_mean_and_median_shift() -> tuple[float, float]:
    """How far the mean and the median of the training distribution lie from sin(3x).

    The glitches add `OUTLIER_RATE * (0.8 - 0.2) * 3.25` to the mean (3.25 is
    the mean shift of a glitch); the median solves
    `(1 - rate) Phi(m / NOISE) + rate * 0.2 = 1/2` (the downward glitches lie below it).
    """
    mean_shift = OUTLIER_RATE * (0.8 - 0.2) * 3.25
    target = (0.5 - OUTLIER_RATE * 0.2) / (1.0 - OUTLIER_RATE)
    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / (NOISE * math.sqrt(2.0))) < target:
            lo = mid
        else:
            hi = mid
    return mean_shift, 0.5 * (lo + hi)


def build(num_mixtures: int, component: str) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(32, activation="tanh"),
            mdn_keras.MDN(1, num_mixtures, component=component),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=mdn_keras.MDNLoss(1, num_mixtures, component=component),
    )
    return model


def plot(path: str, x: np.ndarray, y: np.ndarray, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = curves["x"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, k in zip(axes, (1, 2), strict=True):
        ax.scatter(x[:, 0], y[:, 0], s=3, c="0.6", alpha=0.5, label="training data")
        ax.plot(grid, clean(grid), "k--", lw=1.2, label="clean function sin(3x)")
        for i, component in enumerate(FAMILIES):
            mean, median = curves[(component, k)]
            ax.plot(grid, mean, color=f"C{i}", lw=1.8, label=f"{component}: mean")
            ax.plot(grid, median, color=f"C{i}", lw=1.2, ls=":", label=f"{component}: median")
        ax.set(xlabel="x", title=f"Fitted conditional means and medians, K={k}", ylim=(-2.0, 4.0))
    axes[0].set_ylabel("y")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/heavy_tails.png", help="PNG to write")
    args = parser.parse_args()
    start = time.perf_counter()

    x, y, glitch = make_data(3000, seed=args.seed, outliers=True)
    x_test, y_test, _ = make_data(2000, seed=args.seed + 1, outliers=False)
    grid = np.linspace(-1.0, 1.0, 201, dtype="float32")[:, None]
    truth_test = clean(x_test[:, 0].astype("float64"))
    rows, curves = [], {"x": grid[:, 0]}
    for k in (1, 2):
        for component in FAMILIES:
            keras.utils.set_random_seed(args.seed)
            model = build(k, component)
            model.fit(x, y, epochs=args.epochs, batch_size=256, verbose=0)
            params = model.predict(x_test, batch_size=1000, verbose=0)
            nll = -np.mean(
                keras.ops.convert_to_numpy(mdn_keras.log_prob(params, y_test, 1, k, component))
            )
            mean = keras.ops.convert_to_numpy(mdn_keras.mixture_mean(params, 1, k, component))
            median = keras.ops.convert_to_numpy(
                mdn_keras.mixture_quantile(params, 0.5, 1, k, component=component)
            )
            rmse_mean = np.sqrt(np.mean((mean[:, 0] - truth_test) ** 2))
            rmse_median = np.sqrt(np.mean((median - truth_test) ** 2))
            df = ""
            if component == "student_t":
                _, _, _, df_values = mdn_keras.split_params(params, 1, k, component)
                df = f"{np.median(keras.ops.convert_to_numpy(df_values)):.2f}"
            rows.append((component, k, nll, rmse_mean, rmse_median, df))
            grid_params = model.predict(grid, verbose=0)
            curves[(component, k)] = (
                keras.ops.convert_to_numpy(mdn_keras.mixture_mean(grid_params, 1, k, component))[
                    :, 0
                ],
                keras.ops.convert_to_numpy(
                    mdn_keras.mixture_quantile(grid_params, 0.5, 1, k, component=component)
                ),
            )
    log_clean = (
        -0.5 * math.log(2 * math.pi * NOISE**2) - 0.5 * ((y_test[:, 0] - truth_test) / NOISE) ** 2
    )
    floor = -np.mean(math.log(1.0 - OUTLIER_RATE) + log_clean)
    shift, median_shift = training_mean_and_median_shift()

    print(
        f"backend: {keras.backend.backend()}   epochs: {args.epochs}   3000 training points "
        f"({glitch.mean():.1%} glitches) / 2000 clean held-out points   "
        f"time: {time.perf_counter() - start:.0f} s"
    )
    print("held-out NLL on clean points (nats per point) and RMSE against sin(3x)")
    print(
        f"  {'head':<26} {'clean NLL':>10} {'RMSE mean':>10} {'RMSE median':>12} {'median df':>10}"
    )
    for component, k, nll, rmse_mean, rmse_median, df in rows:
        print(
            f"  {f'{component}, K={k}':<26} {nll:>10.3f} {rmse_mean:>10.4f} "
            f"{rmse_median:>12.4f} {df:>10}"
        )
    print(f"  {'training distribution':<26} {floor:>10.3f} {shift:>10.4f} {median_shift:>12.4f}")
    print(f"  {'clean noise alone':<26} {-np.mean(log_clean):>10.3f}")
    print(
        "  training distribution: the true density of the contaminated data (the NLL floor),\n"
        "  its mean and its median; median df: of the fitted Student-t components"
    )

    plot(args.out, x, y, curves)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
