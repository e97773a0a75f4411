"""Training-step time of an MDN head against keras-mdn-layer, a hand-written twin
and the body alone.

One process, one backend (KERAS_BACKEND). For each cell (batch B, output
dimension D; K mixtures) it builds the same body

    Input(32) -> Dense(128, relu) -> Dense(128, relu) -> head

compiled with Adam and the backend's default `jit_compile`, and times
`train_on_batch` (one step on one batch) for these heads and losses:

* floor:     Dense(P) + MSE on a P-wide target, P = K (2D + 1): the body's cost
             with an output of the same width and the cheapest loss;
* bound:     Dense(P) + only the Gaussian residual term, `sum ((y - loc) s)^2`
             over K and D, with `s` the raw scale block (no activation, no
             log-determinant, no mixture): less elementwise work than any
             mixture likelihood, so `bound/kmdn` is the lowest ratio a head and
             loss in `keras.ops` can reach in that cell;
* headbound: `mdn_keras.MDN` (its default scale activation) with the same
             residual term alone as its loss, reading the head's blocks as
             `MDNLoss` does: the lowest any loss on this package's default
             head can reach, so `headbound/kmdn` above a target shows that
             the head alone (projection, scale activation, concatenate)
             misses it, whatever the loss;
* kmdn:      keras-mdn-layer's `MDN` and `get_mixture_loss_func(D, K)`;
* ours:      `mdn_keras.MDN` and `mdn_keras.MDNLoss` (one column per component
             family when `mdn_keras` lists several, see `families()`);
* hand:      a hand-written head and loss in `keras.ops` with the same scale
             activation (Dense(P); `ops.split`; softplus + 1e-4; log_softmax and
             logsumexp NLL).

Candidates are timed interleaved (one sample of each per round); times are
medians over rounds and ratios medians of per-round ratios. With `--loss-grad`
(default on JAX) it also times the loss and its gradient alone under
`jax.jit` (benchmarks/loss_grad.py) at B=65536, K=8, D=16.

    KERAS_BACKEND=jax python benchmarks/train_step.py            # 3 cells, ~1-2 min
    KERAS_BACKEND=torch python benchmarks/train_step.py --full   # B {1024,4096,16384} x D {1,2,32}
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    BACKEND,
    device_name,
    interleaved,
    markdown_table,
    median,
    ratio,
    sync,
    versions,
)
from keras import ops  # noqa: E402

import mdn_keras  # noqa: E402

try:  # keras-mdn-layer is optional (absent on the GPU check machine unless carried)
    import keras_mdn_layer
except ImportError:  # pragma: no cover - depends on the environment
    keras_mdn_layer = None

INPUT_DIM = 32
HIDDEN = 128
QUICK_CELLS = [(4096, 2), (1024, 32), (4096, 32)]
FULL_BATCHES = [1024, 4096, 16384]
FULL_DIMS = [1, 2, 32]


def families(only: Optional[list[str]] = None) -> list[Optional[str]]:
    """Component families `mdn_keras` offers; `[None]` (the default) when it lists none.

    Looks for `mdn_keras.FAMILIES` (a sequence or mapping of names). Each
    name is passed as `component=name` to `MDN` and `MDNLoss` (see `ours`).
    With `only` (`--families`), just those named.
    """
    listed = getattr(mdn_keras, "FAMILIES", None)
    if not listed:
        return [None]
    if only is not None:
        unknown = sorted(set(only) - set(listed))
        if unknown:
            raise SystemExit(f"--families: expected names from {list(listed)}, got {unknown}")
        return [f for f in listed if f in only]
    return list(listed)


def ours(
    d: int, k: int, component: Optional[str], scale_activation: Optional[str] = None
) -> tuple[keras.layers.Layer, Any]:
    """`mdn_keras.MDN` and `MDNLoss` for one component family (None: the default),
    with the layer's default scale activation or `scale_activation`."""
    kwargs = {} if component is None else {"component": component}
    layer_kwargs = {} if scale_activation is None else {"scale_activation": scale_activation}
    return mdn_keras.MDN(d, k, **kwargs, **layer_kwargs), mdn_keras.MDNLoss(d, k, **kwargs)


class HandHead(keras.layers.Layer):
    """Dense(P), then softplus + 1e-4 on the scale block; output `[loc | scale | logits]`."""

    def __init__(self, d: int, k: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.d, self.k = d, k
        self.dense = keras.layers.Dense(k * (2 * d + 1))

    def build(self, input_shape: Any) -> None:
        self.dense.build(input_shape)

    def call(self, x: Any) -> Any:
        kd = self.k * self.d
        loc, raw, logits = ops.split(self.dense(x), [kd, 2 * kd], axis=-1)
        return ops.concatenate([loc, ops.softplus(raw) + 1e-4, logits], axis=-1)


def hand_loss(d: int, k: int) -> Callable:
    """Per-example NLL of `[loc | scale | logits]`: one `ops.split`, log_softmax, logsumexp."""
    const = 0.5 * d * math.log(2 * math.pi)

    def loss(y_true: Any, y_pred: Any) -> Any:
        kd = k * d
        loc, scale, logits = ops.split(y_pred, [kd, 2 * kd], axis=-1)
        loc = ops.reshape(loc, (-1, k, d))
        scale = ops.reshape(scale, (-1, k, d))
        z = (ops.expand_dims(ops.reshape(y_true, (-1, d)), 1) - loc) / scale
        comp = (
            ops.log_softmax(logits, axis=-1)
            - 0.5 * ops.sum(z * z, axis=-1)
            - ops.sum(ops.log(scale), axis=-1)
            - const
        )
        return -ops.logsumexp(comp, axis=-1)

    return loss


def bound_loss(d: int, k: int) -> Callable:
    """The residual term alone (see `bound` in the module docstring)."""

    def loss(y_true: Any, y_pred: Any) -> Any:
        loc, s, _ = ops.split(y_pred, [k * d, 2 * k * d], axis=-1)
        y = ops.expand_dims(ops.reshape(y_true, (-1, d)), 1)
        z = (y - ops.reshape(loc, (-1, k, d))) * ops.reshape(s, (-1, k, d))
        return ops.sum(z * z, axis=(-2, -1))

    return loss


def head_bound_loss(d: int, k: int) -> Callable:
    """The residual term alone (see `bound`) of the `mdn_keras.MDN` output,
    its blocks read as `MDNLoss` reads them (`reusing_blocks`)."""
    from mdn_keras.shapes import reusing_blocks, split_last

    def loss(y_true: Any, y_pred: Any) -> Any:
        with reusing_blocks():
            loc, s, _ = split_last(y_pred, [k * d, k * d, k])
        y = ops.expand_dims(ops.reshape(y_true, (-1, d)), 1)
        z = (y - ops.reshape(loc, (-1, k, d))) * ops.reshape(s, (-1, k, d))
        return ops.sum(z * z, axis=(-2, -1))

    return loss


def build(head: keras.layers.Layer, loss: Any, seed: int = 0) -> keras.Model:
    """The benchmark body with `head` on top, compiled with Adam and `loss`."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((INPUT_DIM,))
    h = keras.layers.Dense(HIDDEN, activation="relu")(x)
    h = keras.layers.Dense(HIDDEN, activation="relu")(h)
    model = keras.Model(x, head(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return model


def candidates(
    d: int,
    k: int,
    only: Optional[list[str]] = None,
    activations: Optional[list[str]] = None,
) -> dict[str, tuple[keras.Model, bool]]:
    """name -> (compiled model, whether it trains on the P-wide floor target).

    `activations` (`--scale-activations`): scale activations other than the
    layer's default to time as well, one more `ours[family,activation]`
    column each.
    """
    p = k * (2 * d + 1)
    out: dict[str, tuple[keras.Model, bool]] = {
        "floor": (build(keras.layers.Dense(p), "mse"), True),
        "bound": (build(keras.layers.Dense(p), bound_loss(d, k)), False),
        "headbound": (build(mdn_keras.MDN(d, k), head_bound_loss(d, k)), False),
    }
    if keras_mdn_layer is not None:
        out["kmdn"] = (
            build(keras_mdn_layer.MDN(d, k), keras_mdn_layer.get_mixture_loss_func(d, k)),
            False,
        )
    for family in families(only):
        name = "ours" if family is None else f"ours[{family}]"
        out[name] = (build(*ours(d, k, family)), False)
        for activation in activations or []:
            tag = f"{family or 'default'},{activation}"
            out[f"ours[{tag}]"] = (build(*ours(d, k, family, activation)), False)
    out["hand"] = (build(HandHead(d, k), hand_loss(d, k)), False)
    return out


def run_cell(
    batch: int,
    d: int,
    k: int,
    rounds: int,
    min_time: float,
    only: Optional[list[str]] = None,
    activations: Optional[list[str]] = None,
) -> dict[str, Any]:
    """Times every candidate's `train_on_batch` at one cell, interleaved."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, INPUT_DIM)).astype("float32")
    y = rng.normal(size=(batch, d)).astype("float32")
    y_floor = rng.normal(size=(batch, k * (2 * d + 1))).astype("float32")
    # Backend tensors on the default device, made once: a NumPy batch would be
    # copied in on every step (on a GPU, host-to-device copies would dominate).
    x, y, y_floor = (ops.convert_to_tensor(a) for a in (x, y, y_floor))
    models = candidates(d, k, only, activations)
    fns = {
        name: (lambda m=model, t=(y_floor if floor else y): m.train_on_batch(x, t))
        for name, (model, floor) in models.items()
    }
    order = list(fns)
    failed: list[str] = []

    def guarded(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """`fn`, but a candidate that runs out of device memory (at its first
        call or any later one) is reported and dropped, not fatal."""

        def call() -> Any:
            if name in failed:
                return None
            try:
                return fn()
            except Exception as error:
                if not out_of_memory(error):
                    raise
                kind = type(error).__name__
                print(f"  B={batch} D={d} {name}: out of memory ({kind})", flush=True)
                failed.append(name)
                return None

        return call

    fns = {name: guarded(name, fn) for name, fn in fns.items()}
    for name in order:
        sync(fns[name]())
    samples = interleaved(
        {n: f for n, f in fns.items() if n not in failed},
        rounds=rounds,
        min_time=min_time,
        warmup=3,
    )
    samples = {n: s for n, s in samples.items() if n not in failed}
    return {"batch": batch, "d": d, "k": k, "samples": samples, "order": order, "oom": failed}


def out_of_memory(error: Exception) -> bool:
    """Whether `error` is a backend's out-of-memory error (XLA, TensorFlow, CUDA)."""
    text = f"{type(error).__name__}: {error}"
    marks = ("RESOURCE_EXHAUSTED", "ResourceExhausted", "OutOfMemory", "out of memory")
    return any(mark in text for mark in marks)


def report(cells: list[dict[str, Any]]) -> str:
    """Markdown tables: ms per step, then the ratios of each `ours` column."""
    names = list(cells[0]["order"])
    mine = [n for n in names if n.startswith("ours")]
    header = ["B", "D", *[f"{n} ms" for n in names]]
    refs = [r for r in ("kmdn", "hand", "floor") if r in names]
    for n in mine:
        header += [f"{n}/{r}" for r in refs]
    lows = [n for n in ("bound", "headbound") if n in names and "kmdn" in names]
    header += [f"{n}/kmdn" for n in lows]
    rows = []
    for cell in cells:
        s = cell["samples"]
        row = [f"{cell['batch']:,}", str(cell["d"])]
        row += [f"{median(s[n]) * 1e3:.2f}" if n in s else "OOM" for n in names]
        for n in mine:
            row += [f"{ratio(s, n, r):.2f}x" if n in s and r in s else "-" for r in refs]
        row += [f"{ratio(s, n, 'kmdn'):.2f}x" if n in s and "kmdn" in s else "-" for n in lows]
        rows.append(row)
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Ratios below 1 mean mdn_keras is faster than the reference.",
    )
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--quick", action="store_true", help=f"cells {QUICK_CELLS} (the default)")
    grid.add_argument("--full", action="store_true", help="B {1024,4096,16384} x D {1,2,32}")
    parser.add_argument("--batch", help="comma-separated batch sizes (overrides the grid)")
    parser.add_argument(
        "--dims", help="comma-separated output dims D (with --batch; default 1,2,32)"
    )
    parser.add_argument("--num-mixtures", type=int, default=5, help="K (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=9, help="interleaved samples per candidate (default 9)"
    )
    parser.add_argument(
        "--min-time", type=float, default=0.15, help="seconds per sample (default 0.15)"
    )
    parser.add_argument(
        "--families",
        help="comma-separated component families to time (default: all); fewer, slow "
        "ones left out, make shorter rounds and steadier ratios",
    )
    parser.add_argument(
        "--scale-activations",
        help="comma-separated scale activations besides the default to time for each "
        "family, e.g. elu_plus_one (keras-mdn-layer's)",
    )
    parser.add_argument(
        "--loss-grad",
        choices=("auto", "yes", "no"),
        default="auto",
        help="also time loss+gradient alone at B=65536, K=8, D=16 (auto: on JAX only)",
    )
    args = parser.parse_args()
    only = args.families.split(",") if args.families else None
    activations = args.scale_activations.split(",") if args.scale_activations else None
    if args.batch:
        dims = [int(v) for v in (args.dims or "1,2,32").split(",")]
        cells = [(int(b), d) for b in args.batch.split(",") for d in dims]
    elif args.full:
        cells = [(b, d) for b in FULL_BATCHES for d in FULL_DIMS]
    else:
        cells = QUICK_CELLS
    k = args.num_mixtures
    print(f"backend={BACKEND}  device={device_name()}  {versions()}  K={k}")
    print(
        f"families: {[f or 'default' for f in families(only)]}"
        + ("" if keras_mdn_layer else "  (keras-mdn-layer not installed: no kmdn column)")
    )
    results = []
    for batch, d in cells:
        results.append(run_cell(batch, d, k, args.rounds, args.min_time, only, activations))
        print(f"  done B={batch} D={d}:\n{report(results[-1:])}\n", flush=True)
    print("\nms per train_on_batch step (median), ratios = median of per-round ratios:\n")
    print(report(results))
    if args.loss_grad == "yes" or (args.loss_grad == "auto" and BACKEND == "jax"):
        import loss_grad

        print("\nloss + gradient alone (compiled), K=8, D=16:\n")
        print(loss_grad.report([loss_grad.run(65536, 16, 8, rounds=15, min_time=0.1)]))


if __name__ == "__main__":
    main()
