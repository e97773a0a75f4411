"""Generation speed: `mdn_keras.rollout` of the World Models MDN-RNN, in ms per step.

Builds `build_mdn_rnn(latent_dim=D, action_dim=A, hidden_units=H, num_mixtures=K)`
(defaults D=32, A=3, H=256, K=5, the World Models CarRacing sizes), its
`make_step_model`, and times `rollout(step_model, z0, T, ...)` at batch 64
(target: at most 5 ms per step). For where the time goes it also times, per
step, interleaved with the rollout:

* `predict_on_batch`: the step model alone through Keras' inference entry
  point (what `rollout` calls each step);
* `direct call`: the step model called as a function, `step_model(inputs,
  training=False)` (under `torch.no_grad()` on PyTorch);
* `sample`: `mdn_keras.sample` of one step's parameters.

    KERAS_BACKEND=torch python benchmarks/rollout.py
    KERAS_BACKEND=jax python benchmarks/rollout.py --batch 1 --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import BACKEND, device_name, interleaved, markdown_table, median, versions  # noqa: E402

import mdn_keras  # noqa: E402

TARGET_MS = 5.0


def no_grad() -> Any:
    """`torch.no_grad()` on PyTorch, a null context elsewhere."""
    if BACKEND == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=64, help="rollouts in parallel (default 64)")
    parser.add_argument("--latent-dim", type=int, default=32, help="D (default 32)")
    parser.add_argument("--action-dim", type=int, default=3, help="A (default 3)")
    parser.add_argument("--hidden", type=int, default=256, help="LSTM units (default 256)")
    parser.add_argument("--num-mixtures", type=int, default=5, help="K (default 5)")
    parser.add_argument("--steps", type=int, default=50, help="steps per rollout (default 50)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved samples (default 7)")
    args = parser.parse_args()
    b, d, a, k, t = args.batch, args.latent_dim, args.action_dim, args.num_mixtures, args.steps

    keras.utils.set_random_seed(0)
    model = mdn_keras.build_mdn_rnn(d, a, hidden_units=args.hidden, num_mixtures=k)
    step_model = mdn_keras.make_step_model(model)
    rng = np.random.default_rng(0)
    z0 = keras.ops.convert_to_tensor(rng.normal(size=(b, d)).astype("float32"))
    actions = keras.ops.convert_to_tensor(rng.uniform(-1, 1, size=(b, t, a)).astype("float32"))
    states = [keras.ops.zeros((b, args.hidden)) for _ in range(2)]
    inputs = [z0, actions[:, 0], *states]
    params = keras.ops.convert_to_tensor(step_model.predict_on_batch(inputs)[0])
    seed = keras.random.SeedGenerator(1)

    def direct() -> Any:
        with no_grad():
            return step_model(inputs, training=False)[0]

    samples = interleaved(
        {
            "rollout": lambda: mdn_keras.rollout(step_model, z0, t, d, k, actions=actions, seed=0),
            "predict_on_batch": lambda: step_model.predict_on_batch(inputs)[0],
            "direct call": direct,
            "sample": lambda: mdn_keras.sample(params, d, k, seed=seed),
        },
        rounds=args.rounds,
        min_time=0.2,
        warmup=2,
    )
    per_step = {name: median(s) * 1e3 for name, s in samples.items()}
    per_step["rollout"] /= t
    print(f"backend={BACKEND}  device={device_name()}  {versions()}")
    print(f"batch={b} D={d} A={a} LSTM={args.hidden} K={k} steps={t}\n")
    rows = [
        [
            name,
            "per step",
            f"{ms:.2f}",
            f"<= {TARGET_MS}" if name == "rollout" else "",
            ("yes" if ms <= TARGET_MS else "no") if name == "rollout" else "",
        ]
        for name, ms in per_step.items()
    ]
    print(markdown_table(["what", "unit", "ms", "target", "met"], rows))


if __name__ == "__main__":
    main()
