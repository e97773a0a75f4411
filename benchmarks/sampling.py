"""Sampling throughput: mdn_keras.sample against keras-mdn-layer, side by side.

Draws `--rows` samples (one per parameter row) with temperature from the same
parameter tensor (both packages use the layout [loc | scale | logits]) and
prints seconds and ratios, measured in one process:

* keras-mdn-layer `sample_from_output`: its per-row NumPy path, the only one
  that takes a temperature (timed on `--per-row-rows` rows, scaled per row);
* keras-mdn-layer `get_mixture_sampling_fun`: vectorised, no temperature;
* `mdn_keras.sample` with temperature, eager and compiled (`jax.jit`,
  `tf.function(jit_compile=True)`; PyTorch eager only).

    KERAS_BACKEND=jax python benchmarks/sampling.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_mdn_layer  # noqa: E402
import numpy as np  # noqa: E402

import mdn_keras  # noqa: E402

BACKEND = keras.backend.backend()


def timed(fn, repeats):
    """Median wall time of `fn()` (its result converted to NumPy, so work is finished)."""
    keras.ops.convert_to_numpy(fn())  # warm-up / compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compiled(fn):
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-row-rows", type=int, default=10_000)
    parser.add_argument("--output-dim", type=int, default=2)
    parser.add_argument("--num-mixtures", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    d, k, n = args.output_dim, args.num_mixtures, args.rows

    rng = np.random.default_rng(0)
    params_np = np.concatenate(
        [
            rng.normal(size=(n, k * d)),
            rng.uniform(0.1, 1.0, size=(n, k * d)),
            rng.normal(size=(n, k)),
        ],
        axis=-1,
    ).astype("float32")
    params = keras.ops.convert_to_tensor(params_np)

    m = args.per_row_rows
    start = time.perf_counter()
    for row in params_np[:m]:
        keras_mdn_layer.sample_from_output(row, d, k, temp=args.temperature)
    per_row = (time.perf_counter() - start) / m * n

    theirs_vec = keras_mdn_layer.get_mixture_sampling_fun(d, k)
    t_theirs = timed(lambda: theirs_vec(params), args.repeats)
    seed = keras.random.SeedGenerator(0)
    t_ours = timed(
        lambda: mdn_keras.sample(params, d, k, temperature=args.temperature, seed=seed),
        args.repeats,
    )

    rows = [
        ("keras-mdn-layer sample_from_output (per row, temperature)", per_row),
        ("keras-mdn-layer get_mixture_sampling_fun (eager, no temperature)", t_theirs),
        ("mdn_keras.sample (eager, temperature)", t_ours),
    ]
    ratios = [
        ("mdn_keras eager vs per-row path", per_row / t_ours),
        ("mdn_keras eager vs vectorised (eager)", t_theirs / t_ours),
    ]
    jit_ours = compiled(lambda p: mdn_keras.sample(p, d, k, temperature=args.temperature, seed=1))
    jit_theirs = compiled(lambda p: theirs_vec(p))
    notes = []
    if jit_ours is not None:
        c_ours = timed(lambda: jit_ours(params), args.repeats)
        rows.append(("mdn_keras.sample (compiled, temperature)", c_ours))
        ratios.append(("mdn_keras compiled vs per-row path", per_row / c_ours))
        try:
            c_theirs = timed(lambda: jit_theirs(params), args.repeats)
        except ValueError as err:  # unseeded random ops cannot be traced by jax.jit
            notes.append(
                "keras-mdn-layer's vectorised sampler does not compile here: "
                f"{str(err).splitlines()[0][:90]}"
            )
            ratios.append(
                (
                    "mdn_keras compiled vs vectorised (eager; theirs can't compile)",
                    t_theirs / c_ours,
                )
            )
        else:
            rows.append(("keras-mdn-layer get_mixture_sampling_fun (compiled)", c_theirs))
            ratios.append(("mdn_keras compiled vs vectorised (compiled)", c_theirs / c_ours))

    device = keras.ops.convert_to_tensor(np.ones(1))
    print(
        f"backend={BACKEND} rows={n} output_dim={d} num_mixtures={k} "
        f"temperature={args.temperature} tensors on {getattr(device, 'device', 'cpu')}"
    )
    for name, seconds in rows:
        print(f"  {name:<66s} {seconds * 1e3:10.1f} ms")
    for name, ratio in ratios:
        print(f"  ratio {name:<60s} {ratio:10.1f}x")
    for note in notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    main()
