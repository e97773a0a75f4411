"""Time of the mixture statistics on 100,000 rows against their targets.

* `mixture_mode` of `--rows` rows with D=2, K=5 (target: at most 2 s);
* `mixture_quantile` (q=0.9) and `prediction_interval` (coverage 0.9) of
  `--rows` rows with D=1, K=5 (target: at most 0.5 s each);

each eager and compiled (`jax.jit`, `tf.function(jit_compile=True)`;
PyTorch runs eagerly only, so it has no compiled row). Results are converted
to NumPy so the work is finished. A call that takes longer than `--long`
seconds is timed once; shorter ones are the median of `--repeats` runs after
a warm-up (which also compiles). The parameters are random but fixed
(seed 0), with well-separated and overlapping components mixed.

(Named `mixture_statistics.py`, not `statistics.py`: a file of that name in
this folder would shadow the standard library's `statistics` module for
every script run from here.)

    KERAS_BACKEND=jax python benchmarks/mixture_statistics.py
    KERAS_BACKEND=torch python benchmarks/mixture_statistics.py --only quantile,interval
    KERAS_BACKEND=torch python benchmarks/mixture_statistics.py --mode-loops 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    BACKEND,
    compiled,
    device_name,
    interleaved,
    markdown_table,
    median,
    ratio,
    versions,
)

import mdn_keras  # noqa: E402
from mdn_keras import statistics  # noqa: E402

K = 5
TARGETS = {"mode": 2.0, "quantile": 0.5, "interval": 0.5}


def random_params(rows: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Float32 `(rows, P)` flat parameters; loc ~ N(0, 2), scale in [0.2, 1.5], logits ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.normal(scale=2.0, size=(rows, k * d)),
            rng.uniform(0.2, 1.5, size=(rows, k * d)),
            rng.normal(size=(rows, k)),
        ],
        axis=-1,
    ).astype("float32")


def timed(fn: Callable[[], Any], repeats: int, long: float) -> tuple[float, int]:
    """(median seconds, number of timed runs) of `fn()`, converted to NumPy."""
    start = time.perf_counter()
    keras.tree.map_structure(keras.ops.convert_to_numpy, fn())
    first = time.perf_counter() - start
    if first > long:
        return first, 1  # slow: this first run is the measurement (nothing to compile on torch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.tree.map_structure(keras.ops.convert_to_numpy, fn())
        times.append(time.perf_counter() - start)
    return median(times), repeats


def workloads(rows: int) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    """name -> (function of the params tensor, params tensor)."""
    p2 = keras.ops.convert_to_tensor(random_params(rows, 2, K))
    p1 = keras.ops.convert_to_tensor(random_params(rows, 1, K, seed=1))
    return {
        "mode": (lambda p: mdn_keras.mixture_mode(p, 2, K), p2),
        "quantile": (lambda p: mdn_keras.mixture_quantile(p, 0.9, 1, K), p1),
        "interval": (lambda p: mdn_keras.prediction_interval(p, 0.9, 1, K), p1),
    }


def compare_mode_loops(rows: int, rounds: int) -> None:
    """PyTorch: `mixture_mode`'s search with stopped rows dropped against kept, interleaved."""
    params = keras.ops.convert_to_tensor(random_params(rows, 2, K))
    family, _, logits, parts = statistics._split(params, 2, K, "normal")
    iterations, tolerance = statistics.DEFAULT_MODE_ITERATIONS, statistics.DEFAULT_MODE_TOLERANCE

    def run(compact: bool) -> Any:
        mode, _ = statistics._mode_search(
            family, logits, parts, iterations, tolerance, compact=compact
        )
        return keras.ops.convert_to_numpy(mode)

    candidates = {"compacting": lambda: run(True), "masked": lambda: run(False)}
    compact, masked = candidates["compacting"](), candidates["masked"]()
    if device_name().startswith("cpu"):  # the same arithmetic per row, the same bits
        np.testing.assert_array_equal(compact, masked)
    else:  # GPU kernels may round by batch size; flat ridges amplify it
        differ = np.any(compact != masked, axis=-1)
        print(
            f"rows whose mode differs between the loops: {int(differ.sum()):,} of {rows:,}"
            f" (largest difference {float(np.max(np.abs(compact - masked))):.2e})"
        )
    samples = interleaved(candidates, rounds, min_time=0.0, warmup=1)
    print(f"mode loops, {rows:,} rows, D=2, K={K}, median of {rounds} interleaved rounds:")
    for name, times in samples.items():
        print(f"  {name:<11s} {median(times):8.3f} s")
    print(f"  compacting/masked {ratio(samples, 'compacting', 'masked'):.2f}x")
    print(
        f"  (mixture_mode compacts on a CPU from COMPACT_MIN_ROWS="
        f"{statistics.COMPACT_MIN_ROWS:,} rows, never on a GPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=100_000, help="rows (default 100,000)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of fast calls (default 5)"
    )
    parser.add_argument(
        "--long", type=float, default=3.0, help="a call slower than this is timed once"
    )
    parser.add_argument("--only", help="comma-separated subset of mode,quantile,interval")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled rows")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager rows")
    parser.add_argument(
        "--mode-loops",
        type=int,
        metavar="ROUNDS",
        help="PyTorch only: time the mode's compacting loop against its masked loop "
        "(ROUNDS interleaved rounds) instead of the table",
    )
    args = parser.parse_args()
    if args.mode_loops:
        if BACKEND != "torch":
            parser.error("--mode-loops compares the PyTorch loops; use KERAS_BACKEND=torch")
        print(f"backend={BACKEND}  device={device_name()}  {versions()}")
        compare_mode_loops(args.rows, args.mode_loops)
        return
    wanted = args.only.split(",") if args.only else list(TARGETS)
    print(f"backend={BACKEND}  device={device_name()}  {versions()}  rows={args.rows:,}")
    rows = []
    for name, (fn, params) in workloads(args.rows).items():
        if name not in wanted:
            continue
        modes: list[tuple[str, Optional[Callable]]] = []
        if not args.no_eager:
            modes.append(("eager", fn))
        if not args.no_compiled:
            modes.append(("compiled", compiled(fn)))
        for mode, f in modes:
            if f is None:
                continue
            seconds, runs = timed(lambda f=f, p=params: f(p), args.repeats, args.long)
            ok = "yes" if seconds <= TARGETS[name] else "no"
            rows.append([name, mode, f"{seconds:.3f}", f"<= {TARGETS[name]}", ok, str(runs)])
            print(f"  {name:<9s} {mode:<9s} {seconds:8.3f} s", flush=True)
    print()
    print(markdown_table(["statistic", "mode", "seconds", "target", "met", "runs"], rows))


if __name__ == "__main__":
    main()
