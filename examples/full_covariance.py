"""Diagonal vs full-covariance components on correlated 2-D targets.

Data: x ~ U(0, 1) and y in R^2 drawn from a mixture of two tilted, elongated
Gaussian "ellipses" whose centres, weights and orientations move with x:

    component A: weight 0.35 + 0.3 x, centre (-0.5 + 0.8 x, 0.4 sin(2 pi x)),
                 axis standard deviations (0.45, 0.07), tilted from +20 to +70 degrees
    component B: weight 0.65 - 0.3 x, centre (0.6 - 0.4 x, -0.4 + 0.8 x),
                 axis standard deviations (0.35, 0.06), tilted from -70 to -20 degrees

so each component's correlation is 0.88 to 0.95 in absolute value (positive
for A, negative for B). A diagonal Gaussian component (`component="normal"`)
can only lay axis-aligned ellipses on that; a full-covariance one
(`component="mvn_tril"`) fits each tilted ellipse with one component.

Trains the same network with `MDN(2, 2, component="normal")`,
`MDN(2, 2, component="mvn_tril")` and, for reference, a diagonal head with
three times as many components (`MDN(2, 6)`), then prints for each the
held-out NLL (nats per point, summed over the two coordinates), the size of
the head, and the error of the predicted correlation of y given x (from
`Mixture.covariance()`, the law of total covariance) against the true one.
The true density's NLL is the floor. Writes a PNG with the predicted density
and the components' 2-sigma ellipses at three values of x, over samples of
the true conditional distribution.

    python examples/full_covariance.py [--epochs 100] [--out outputs/full_covariance.png]

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

PLOT_X = (0.1, 0.5, 0.9)
BATCH_SIZE = 128


def truth(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true conditional mixture at `x` `(n,)`: weights `(n, 2)`, centres `(n, 2, 2)`,
    covariances `(n, 2, 2, 2)`."""
    w_a = 0.35 + 0.3 * x
    weights = np.stack([w_a, 1.0 - w_a], -1)
    centres = np.stack(
        [
            np.stack([-0.5 + 0.8 * x, 0.4 * np.sin(2 * np.pi * x)], -1),
            np.stack([0.6 - 0.4 * x, -0.4 + 0.8 * x], -1),
        ],
        1,
    )
    covs = []
    for (major, minor), angle in (
        ((0.45, 0.07), np.deg2rad(20.0 + 50.0 * x)),
        ((0.35, 0.06), np.deg2rad(-70.0 + 50.0 * x)),
    ):
        c, s = np.cos(angle), np.sin(angle)
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n, 2, 2)
        covs.append(rot @ np.diag([major**2, minor**2]) @ np.swapaxes(rot, -1, -2))
    return weights, centres, np.stack(covs, 1)


def sample_truth(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    weights, centres, covs = truth(x)
    k = (rng.uniform(size=len(x)) > weights[:, 0]).astype(int)
    rows = np.arange(len(x))
    chol = np.linalg.cholesky(covs[rows, k])
    return centres[rows, k] + (chol @ rng.normal(size=(len(x), 2, 1)))[..., 0]


def true_log_prob(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    weights, centres, covs = truth(x)
    diff = y[:, None, :] - centres  # (n, 2, 2)
    chol = np.linalg.cholesky(covs)
    z = np.linalg.solve(chol, diff[..., None])[..., 0]
    log_det = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    per = np.log(weights) - 0.5 * (z**2).sum(-1) - log_det - math.log(2 * math.pi)
    top = per.max(-1)
    return top + np.log(np.exp(per - top[:, None]).sum(-1))


def true_correlation(x: np.ndarray) -> np.ndarray:
    """Correlation of y's two coordinates given x (law of total covariance)."""
    weights, centres, covs = truth(x)
    mean = (weights[..., None] * centres).sum(1, keepdims=True)
    centred = centres - mean
    between = centred[..., :, None] * centred[..., None, :]
    cov = (weights[..., None, None] * (covs + between)).sum(1)
    return cov[:, 0, 1] / np.sqrt(cov[:, 0, 0] * cov[:, 1, 1])


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=n)
    return x[:, None].astype("float32"), sample_truth(x, rng).astype("float32")


def build(num_mixtures: int, component: str, decay_steps: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            mdn_keras.MDN(2, num_mixtures, component=component),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, decay_steps)),
        loss=mdn_keras.MDNLoss(2, num_mixtures, component=component),
    )
    return model


def ellipse(ax, centre: np.ndarray, cov: np.ndarray, weight: float, color: str) -> None:
    """The 2-sigma ellipse of `N(centre, cov)`, its line width by `weight`."""
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    width, height = 4.0 * np.sqrt(np.maximum(vals[::-1], 0.0))
    ax.add_patch(
        Ellipse(
            centre,
            width,
            height,
            angle=angle,
            fill=False,
            color=color,
            lw=0.5 + 3.0 * weight,
        )
    )


def plot(path: str, models: dict, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed + 2)
    grid = np.linspace(-1.6, 1.6, 121, dtype="float32")
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], -1)
    fig, axes = plt.subplots(
        len(models), len(PLOT_X), figsize=(3.1 * len(PLOT_X), 3.0 * len(models))
    )
    for row, (name, (model, k, component)) in enumerate(models.items()):
        params = model.predict(np.asarray(PLOT_X, dtype="float32")[:, None], verbose=0)
        mix = mdn_keras.Mixture(params, 2, k, component=component)
        density = np.exp(
            keras.ops.convert_to_numpy(
                mdn_keras.log_prob(params[:, None, :], points[None], 2, k, component=component)
            )
        )
        loc = keras.ops.convert_to_numpy(mix.loc)
        covs = keras.ops.convert_to_numpy(mix.component.covariance(mix.parts))
        probs = keras.ops.convert_to_numpy(mix.probs)
        for col, x0 in enumerate(PLOT_X):
            ax = axes[row, col]
            ys = sample_truth(np.full(400, x0), rng)
            ax.contourf(gx, gy, density[col].reshape(gx.shape), levels=12, cmap="Blues")
            ax.scatter(ys[:, 0], ys[:, 1], s=2, c="k", alpha=0.35)
            for j in range(k):
                ellipse(ax, loc[col, j], covs[col, j], probs[col, j], "C3")
            ax.set(xlim=(-1.6, 1.6), ylim=(-1.6, 1.6), aspect="equal", xticks=[], yticks=[])
            if row == 0:
                ax.set_title(f"x = {x0}")
            if col == 0:
                ax.set_ylabel(name)
    fig.suptitle(
        "Predicted density p(y | x) (blue), component 2-sigma ellipses (red),\n"
        "samples of the true conditional distribution (black)",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/full_covariance.png", help="PNG to write")
    args = parser.parse_args()
    start = time.perf_counter()

    x, y = make_data(4000, seed=args.seed)
    x_test, y_test = make_data(2000, seed=args.seed + 1)
    runs = {
        "diagonal (normal), K=2": (2, "normal"),
        "full (mvn_tril), K=2": (2, "mvn_tril"),
        "diagonal (normal), K=6": (6, "normal"),
    }
    models, rows = {}, []
    true_corr = true_correlation(x_test[:, 0])
    for name, (k, component) in runs.items():
        keras.utils.set_random_seed(args.seed)
        model = build(k, component, decay_steps=args.epochs * math.ceil(len(x) / BATCH_SIZE))
        model.fit(x, y, epochs=args.epochs, batch_size=BATCH_SIZE, verbose=0)
        params = model.predict(x_test, batch_size=1000, verbose=0)
        nll = -np.mean(
            keras.ops.convert_to_numpy(mdn_keras.log_prob(params, y_test, 2, k, component))
        )
        cov = keras.ops.convert_to_numpy(mdn_keras.Mixture(params, 2, k, component).covariance())
        corr = cov[:, 0, 1] / np.sqrt(cov[:, 0, 0] * cov[:, 1, 1])
        size = mdn_keras.params_size(2, k, component)
        rows.append((name, size, model.count_params(), nll, np.mean(np.abs(corr - true_corr))))
        models[name] = (model, k, component)
    floor = -np.mean(true_log_prob(x_test[:, 0].astype("float64"), y_test.astype("float64")))

    print(
        f"backend: {keras.backend.backend()}   epochs: {args.epochs}   "
        f"4000 training / 2000 held-out points   time: {time.perf_counter() - start:.0f} s"
    )
    print("held-out NLL (nats per point, lower is better)")
    print(f"  {'head':<24} {'head outputs':>12} {'weights':>8} {'NLL':>8} {'corr. error':>12}")
    for name, size, weights, nll, corr_err in rows:
        print(f"  {name:<24} {size:>12} {weights:>8} {nll:>8.3f} {corr_err:>12.3f}")
    print(f"  {'true density (floor)':<24} {'':>12} {'':>8} {floor:>8.3f} {0.0:>12.3f}")
    print("  corr. error: mean |predicted - true| correlation of y given x (Mixture.covariance())")

    plot(args.out, models, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
