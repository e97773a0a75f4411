"""World Models' MDN-RNN on a small stochastic environment, and its dreams.

The environment ("gusty plane") ships with this file. A drone at position
`z = (x, y)` flies with action `a` in [-1, 1]^2; at every step a gust blows it
north, south, or not at all:

    z_{t+1} = 0.8 z_t + 0.2 a_t + g_t (0, 1) + N(0, 0.03^2 I),
    g_t in {-0.5, 0, +0.5} with probabilities (0.35, 0.30, 0.35)

so, given `(z_t, a_t)`, the next state has three sharp modes. The script

1. records random-action episodes,
2. trains the MDN-RNN `(z_t, a_t) -> LSTM -> MDN(z_{t+1})` with K=5, the same
   network with K=1 (one Gaussian), and with a plain `Dense` head under mean
   squared error,
3. prints the held-out negative log-likelihood per step of each (for the MSE
   model: a Gaussian around its prediction with the per-dimension variance
   of its training residuals, the MSE-optimal constant variance),
4. dreams rollouts from the trained model, one step at a time, at
   temperatures 0.5, 1.0 and 1.5 (`mdn_keras.rollout`), prints how often
   they contain gusts and transitions the environment can never produce,
   and plots them beside real episodes driven by the same actions.

Run:  python examples/world_models.py [--quick] [--out outputs/world_models.png]
The backend is `KERAS_BACKEND` (JAX when unset).
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
from mdn_keras import build_mdn_rnn, make_step_model, rollout  # noqa: E402

LATENT_DIM, ACTION_DIM = 2, 2
DECAY, GAIN, NOISE = 0.8, 0.2, 0.03
GUSTS = np.array([-0.5, 0.0, 0.5])
GUST_PROBS = np.array([0.35, 0.30, 0.35])
TEMPERATURES = (0.5, 1.0, 1.5)


class GustyPlane:
    """The environment: vectorised over a batch of episodes, NumPy only."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, n: int) -> np.ndarray:
        return self.rng.normal(0.0, 0.5, size=(n, LATENT_DIM))

    def step(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        gust = self.rng.choice(GUSTS, p=GUST_PROBS, size=len(z))
        noise = self.rng.normal(0.0, NOISE, size=z.shape)
        return DECAY * z + GAIN * a + np.stack([0 * gust, gust], -1) + noise

    @staticmethod
    def log_prob(z: np.ndarray, a: np.ndarray, z_next: np.ndarray) -> np.ndarray:
        """Exact `log p(z_next | z, a)`: the best NLL any model can reach."""
        r = z_next - DECAY * z - GAIN * a
        log_n = lambda v: -0.5 * (v / NOISE) ** 2 - math.log(NOISE * math.sqrt(2 * math.pi))  # noqa: E731
        per_gust = np.stack(
            [
                math.log(p) + log_n(r[..., 0]) + log_n(r[..., 1] - g)
                for g, p in zip(GUSTS, GUST_PROBS, strict=True)
            ],
            -1,
        )
        top = per_gust.max(-1)
        return top + np.log(np.exp(per_gust - top[..., None]).sum(-1))

    def episodes(self, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` episodes under uniformly random actions: z `(n, steps+1, 2)`, a `(n, steps, 2)`."""
        actions = self.rng.uniform(-1.0, 1.0, size=(n, steps, ACTION_DIM))
        z = [self.reset(n)]
        for t in range(steps):
            z.append(self.step(z[-1], actions[:, t]))
        return np.stack(z, 1).astype("float32"), actions.astype("float32")


def residuals(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """What the environment added beyond its mean: gust + noise, `(n, steps, 2)`."""
    return z[:, 1:] - DECAY * z[:, :-1] - GAIN * a


def mse_model(hidden_units: int) -> keras.Model:
    z = keras.Input((None, LATENT_DIM), name="z")
    a = keras.Input((None, ACTION_DIM), name="action")
    h = keras.layers.Concatenate()([z, a])
    h = keras.layers.LSTM(hidden_units, return_sequences=True)(h)
    return keras.Model([z, a], keras.layers.Dense(LATENT_DIM)(h), name="mse_rnn")


def gaussian_nll(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    """Mean over steps of `-log N(y; mean, diag(var))`, summed over dimensions."""
    per_dim = 0.5 * np.log(2 * np.pi * var) + 0.5 * (y - mean) ** 2 / var
    return float(per_dim.sum(-1).mean())


def train(model, loss, train_data, epochs, batch_size):
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss)
    (z, a) = train_data
    model.fit([z[:, :-1], a], z[:, 1:], epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def dream_stats(res: np.ndarray) -> tuple[float, float]:
    """Share of steps with a gust, and share no gust explains (> 4 noise std off)."""
    gust = np.abs(res[..., 1]) > 0.25
    off_y = np.min(np.abs(res[..., 1, None] - GUSTS), -1) > 4 * NOISE
    impossible = off_y | (np.abs(res[..., 0]) > 4 * NOISE)
    return float(gust.mean()), float(impossible.mean())


def plot(path, real, dreams, res_real, res_dreams, num_lines):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("real episodes", real, res_real)] + [
        (name, z, r) for (name, z), r in zip(dreams.items(), res_dreams.values(), strict=True)
    ]
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6), sharey="row")
    colors = plt.cm.tab10(np.arange(num_lines))
    bins = np.linspace(-1.0, 1.0, 81)
    for col, (title, z, res) in enumerate(panels):
        top, bottom = axes[0, col], axes[1, col]
        for i in range(num_lines):
            top.plot(z[i, :, 1], color=colors[i], lw=1.2)
        top.set_title(title, fontsize=10)
        top.set_xlabel("step")
        bottom.hist(res[..., 1].ravel(), bins=bins, color="tab:gray")
        bottom.set_xlabel("north-south step residual")
    axes[0, 0].set_ylabel("y (north) position")
    axes[1, 0].set_ylabel("count")
    fig.suptitle(
        "Gusty plane: real episodes vs MDN-RNN dreams (same start and actions)", fontsize=11
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, for smoke tests")
    parser.add_argument("--out", default="outputs/world_models.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    keras.utils.set_random_seed(args.seed)

    if args.quick:
        n_train, n_test, steps, epochs, hidden, batch = 64, 32, 12, 2, 16, 32
    else:
        n_train, n_test, steps, epochs, hidden, batch = 512, 128, 32, 30, 32, 32
    env = GustyPlane(args.seed)
    train_data = env.episodes(n_train, steps)
    z_test, a_test = env.episodes(n_test, steps)
    x_test, y_test = [z_test[:, :-1], a_test], z_test[:, 1:]
    print(
        f"backend={keras.backend.backend()}  episodes: {n_train} train, {n_test} "
        f"held out, {steps} steps each"
    )

    models = {}
    for k in (5, 1):
        keras.utils.set_random_seed(args.seed)
        model = build_mdn_rnn(LATENT_DIM, ACTION_DIM, hidden_units=hidden, num_mixtures=k)
        models[k] = train(model, mdn_keras.MDNLoss(LATENT_DIM, k), train_data, epochs, batch)
    keras.utils.set_random_seed(args.seed)
    mse = train(mse_model(hidden), "mse", train_data, epochs, batch)

    # Held-out NLL per step (nats, summed over the 2 dimensions).
    nll = {
        f"MDN-RNN, K={k}": m.evaluate(x_test, y_test, batch_size=256, verbose=0)
        for k, m in models.items()
    }
    z_train, a_train = train_data
    var = (mse.predict([z_train[:, :-1], a_train], verbose=0) - z_train[:, 1:]) ** 2
    var = var.reshape(-1, LATENT_DIM).mean(0)
    nll["MSE-RNN + constant variance"] = gaussian_nll(y_test, mse.predict(x_test, verbose=0), var)
    nll["true environment density"] = float(-env.log_prob(z_test[:, :-1], a_test, y_test).mean())
    print("\nHeld-out negative log-likelihood per step (nats, lower is better)")
    print(f"  {'model':<30} {'NLL/step':>9}")
    for name, value in nll.items():
        print(f"  {name:<30} {value:>9.3f}")

    # Dreams: start where held-out episodes start, replay their actions.
    step_models = {k: make_step_model(m) for k, m in models.items()}
    dreams, res_dreams = {}, {}
    runs = [(5, t) for t in TEMPERATURES] + [(1, 1.0)]
    for k, tau in runs:
        z = rollout(
            step_models[k],
            z_test[:, 0],
            steps,
            LATENT_DIM,
            k,
            actions=a_test,
            temperature=tau,
            sigma_temperature=tau,
            seed=args.seed,
        )
        z = np.concatenate([z_test[:, :1], keras.ops.convert_to_numpy(z)], axis=1)
        name = f"dream K={k}, tau={tau}"
        dreams[name], res_dreams[name] = z, residuals(z, a_test)
    res_real = residuals(z_test, a_test)

    print("\nDreamed transitions (real: the environment itself)")
    print(f"  {'source':<22} {'gust steps':>10} {'impossible steps':>17}")
    for name, res in [("real", res_real), *res_dreams.items()]:
        gust, impossible = dream_stats(res)
        print(f"  {name:<22} {gust:>10.1%} {impossible:>17.1%}")

    plot(args.out, z_test, dreams, res_real, res_dreams, num_lines=4)
    print(f"\nwrote {args.out}   ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
