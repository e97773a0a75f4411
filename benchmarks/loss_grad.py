"""Loss and gradient alone: `mdn_keras.mdn_nll` against a hand-written loss, side by side.

Times `mean(nll)` and its gradient with respect to the flat parameter tensor
(the part of a training step the head's loss owns), compiled where the
backend compiles (`jax.jit`, `tf.function(jit_compile=True)`; PyTorch eager
autograd, or `torch.compile` with `--torch-compile`), against a hand-written
loss in the backend's own array library (`jax.numpy`, `torch`; `keras.ops`
on TensorFlow): one split, `log_softmax`, `logsumexp`.

Prints milliseconds, the ratio ours/hand-written (median of per-round
ratios) and the achieved memory throughput:

    bytes moved = 4 * B * (2 * P + D)    (float32; P = K * (2D + 1))

i.e. read the parameters and the targets once and write the gradient once,
the least any implementation must move. On a GPU the script also prints it
as a fraction of the device's peak bandwidth.

    KERAS_BACKEND=jax python benchmarks/loss_grad.py                # B=65536, K=8, D=16
    KERAS_BACKEND=torch python benchmarks/loss_grad.py --batch 65536,262144,1048576
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    BACKEND,
    device_name,
    gpu_bandwidth_gbs,
    interleaved,
    markdown_table,
    median,
    ratio,
    versions,
)

import mdn_keras  # noqa: E402


def make_params(batch: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 `(B, P)` parameters (positive scales) and `(B, D)` targets."""
    rng = np.random.default_rng(seed)
    params = np.concatenate(
        [
            rng.normal(size=(batch, k * d)),
            rng.uniform(0.2, 1.5, size=(batch, k * d)),
            rng.normal(size=(batch, k)),
        ],
        axis=-1,
    ).astype("float32")
    y = rng.normal(size=(batch, d)).astype("float32")
    return params, y


def hand_nll_jax(params: Any, y: Any, d: int, k: int) -> Any:
    """Hand-written mean NLL in `jax.numpy`."""
    import jax
    import jax.numpy as jnp

    loc, scale, logits = jnp.split(params, [k * d, 2 * k * d], axis=-1)
    loc = loc.reshape(*loc.shape[:-1], k, d)
    scale = scale.reshape(*scale.shape[:-1], k, d)
    z = (y[..., None, :] - loc) / scale
    comp = (
        jax.nn.log_softmax(logits, axis=-1)
        - 0.5 * jnp.sum(z * z, axis=-1)
        - jnp.sum(jnp.log(scale), axis=-1)
        - 0.5 * d * math.log(2 * math.pi)
    )
    return -jnp.mean(jax.nn.logsumexp(comp, axis=-1))


def hand_nll_torch(params: Any, y: Any, d: int, k: int) -> Any:
    """Hand-written mean NLL in `torch`."""
    import torch

    loc, scale, logits = torch.split(params, [k * d, k * d, k], dim=-1)
    loc = loc.reshape(*loc.shape[:-1], k, d)
    scale = scale.reshape(*scale.shape[:-1], k, d)
    z = (y.unsqueeze(-2) - loc) / scale
    comp = (
        torch.log_softmax(logits, dim=-1)
        - 0.5 * (z * z).sum(-1)
        - torch.log(scale).sum(-1)
        - 0.5 * d * math.log(2 * math.pi)
    )
    return -torch.logsumexp(comp, dim=-1).mean()


def hand_nll_ops(params: Any, y: Any, d: int, k: int) -> Any:
    """Hand-written mean NLL in `keras.ops` (used on TensorFlow)."""
    from keras import ops

    loc, scale, logits = ops.split(params, [k * d, 2 * k * d], axis=-1)
    loc = ops.reshape(loc, (-1, k, d))
    scale = ops.reshape(scale, (-1, k, d))
    z = (ops.expand_dims(y, -2) - loc) / scale
    comp = (
        ops.log_softmax(logits, axis=-1)
        - 0.5 * ops.sum(z * z, axis=-1)
        - ops.sum(ops.log(scale), axis=-1)
        - 0.5 * d * math.log(2 * math.pi)
    )
    return -ops.mean(ops.logsumexp(comp, axis=-1))


def ours_nll(params: Any, y: Any, d: int, k: int) -> Any:
    """`mdn_keras.mdn_nll`, averaged."""
    return keras.ops.mean(mdn_keras.mdn_nll(y, params, d, k))


def value_and_grad_fn(loss: Callable, d: int, k: int, torch_compile: bool = False) -> Callable:
    """`(params, y) -> (loss, dloss/dparams)`, compiled for the backend."""
    if BACKEND == "jax":
        import jax

        return jax.jit(jax.value_and_grad(lambda p, y: loss(p, y, d, k)))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(p: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(p)
                value = loss(p, y, d, k)
            return value, tape.gradient(value, p)

        return step
    import torch

    def step_torch(p: Any, y: Any) -> Any:
        p = p.detach().requires_grad_(True)
        value = loss(p, y, d, k)
        (grad,) = torch.autograd.grad(value, p)
        return value.detach(), grad

    return torch.compile(step_torch) if torch_compile else step_torch


def run(
    batch: int, d: int, k: int, rounds: int, min_time: float, torch_compile: bool = False
) -> dict[str, Any]:
    """Times ours and the hand-written loss+gradient at one size; returns a result row."""
    params_np, y_np = make_params(batch, d, k)
    params = keras.ops.convert_to_tensor(params_np)
    y = keras.ops.convert_to_tensor(y_np)
    hand = {"jax": hand_nll_jax, "torch": hand_nll_torch}.get(BACKEND, hand_nll_ops)
    f_ours = value_and_grad_fn(ours_nll, d, k, torch_compile)
    f_hand = value_and_grad_fn(hand, d, k, torch_compile)
    a, b = f_ours(params, y), f_hand(params, y)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(a[0]), keras.ops.convert_to_numpy(b[0]), rtol=1e-4
    )
    samples = interleaved(
        {"ours": lambda: f_ours(params, y), "hand": lambda: f_hand(params, y)},
        rounds=rounds,
        min_time=min_time,
    )
    p = k * (2 * d + 1)
    moved = 4 * batch * (2 * p + d)
    t_ours, t_hand = median(samples["ours"]), median(samples["hand"])
    return {
        "batch": batch,
        "d": d,
        "k": k,
        "ours_ms": t_ours * 1e3,
        "hand_ms": t_hand * 1e3,
        "ratio": ratio(samples, "ours", "hand"),
        "bytes": moved,
        "ours_gbs": moved / t_ours / 1e9,
        "hand_gbs": moved / t_hand / 1e9,
    }


def report(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `run` results, with the fraction of peak bandwidth on a GPU."""
    peak = gpu_bandwidth_gbs() if "cpu" not in device_name() else None
    header = ["B", "K, D", "mdn_nll ms", "hand-written ms", "ours/hand", "ours GB/s", "hand GB/s"]
    if peak:
        header.append(f"ours / peak {peak[0]:.0f} GB/s")
    out = []
    for r in rows:
        line = [
            f"{r['batch']:,}",
            f"{r['k']}, {r['d']}",
            f"{r['ours_ms']:.2f}",
            f"{r['hand_ms']:.2f}",
            f"{r['ratio']:.2f}x",
            f"{r['ours_gbs']:.1f}",
            f"{r['hand_gbs']:.1f}",
        ]
        if peak:
            line.append(f"{100 * r['ours_gbs'] / peak[0]:.0f}%")
        out.append(line)
    text = markdown_table(header, out)
    text += (
        "\n\nbytes moved = 4 * B * (2P + D), P = K(2D + 1): "
        "parameters and targets read once, gradient written once."
    )
    if peak:
        text += f"\npeak bandwidth: {peak[0]:.0f} GB/s ({peak[1]})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="bytes moved = 4 * B * (2P + D) with P = K(2D+1).",
    )
    parser.add_argument(
        "--batch", default="65536", help="comma-separated batch sizes (default 65536)"
    )
    parser.add_argument("--output-dim", type=int, default=16, help="D (default 16)")
    parser.add_argument("--num-mixtures", type=int, default=8, help="K (default 8)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved samples per candidate")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per sample")
    parser.add_argument("--torch-compile", action="store_true", help="torch.compile both (PyTorch)")
    args = parser.parse_args()
    print(f"backend={BACKEND}  device={device_name()}  {versions()}")
    rows = [
        run(
            int(b),
            args.output_dim,
            args.num_mixtures,
            args.rounds,
            args.min_time,
            args.torch_compile,
        )
        for b in args.batch.split(",")
    ]
    print(report(rows))


if __name__ == "__main__":
    main()
