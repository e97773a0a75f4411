"""Shared helpers of the benchmark scripts: interleaved timing, compilation, devices.

Timings on a shared machine are noisy, so every script measures its
candidates *interleaved*: each round times every candidate once (in a rotated
order), and the reported time is the median over rounds. Ratios are the median
of the per-round ratios, so two candidates are always compared on samples
taken seconds apart.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Mapping, Optional, Sequence

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

BACKEND = keras.backend.backend()


def sync(value: Any) -> Any:
    """Blocks until `value` (a tensor, a number or a nested structure) is computed."""
    if BACKEND == "jax":
        import jax

        return jax.block_until_ready(value)
    if BACKEND == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return value
    leaves = keras.tree.flatten(value)
    for leaf in leaves[:1]:
        if hasattr(leaf, "numpy"):
            leaf.numpy()
    return value


def calibrate(fn: Callable[[], Any], min_time: float) -> int:
    """How many calls of `fn` (already warmed up) take at least `min_time` seconds."""
    start = time.perf_counter()
    sync(fn())
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(round(min_time / once)))


def time_calls(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of `fn`, over `calls` back-to-back calls (synchronised at the end)."""
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / calls


def interleaved(
    candidates: Mapping[str, Callable[[], Any]],
    rounds: int,
    min_time: float = 0.1,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Per-call seconds of each candidate, one sample per round, rounds interleaved.

    Args:
        candidates: name -> zero-argument callable (one call = one unit of work).
        rounds: samples per candidate.
        min_time: each sample repeats the call until about this many seconds.
        warmup: untimed calls first (compilation, caches).

    Returns:
        name -> list of `rounds` per-call times in seconds, in round order.
    """
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            sync(candidates[name]())
    calls = {name: calibrate(candidates[name], min_time) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_calls(candidates[name], calls[name]))
    return samples


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def ratio(samples: Mapping[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of `time(a) / time(b)` (both measured in the same round)."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def compiled(fn: Callable, jit: bool = True) -> Optional[Callable]:
    """`fn` compiled for the backend (`jax.jit`, `tf.function(jit_compile=True)`);
    on PyTorch `torch.compile` only when asked (`jit=True` means eager there: None)."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=jit)
    return None


def versions() -> str:
    """One line naming Python and the installed backend versions."""
    parts = [f"Python {platform.python_version()}", f"Keras {keras.__version__}"]
    from importlib import metadata

    for dist, label in (("tensorflow", "TensorFlow"), ("jax", "JAX"), ("torch", "PyTorch")):
        try:
            parts.append(f"{label} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # absent installs are just not listed
            continue
    return ", ".join(parts)


def device_name() -> str:
    """The accelerator the backend computes on, or the CPU with its core count."""
    if BACKEND == "jax":
        import jax

        dev = jax.devices()[0]
        if dev.platform != "cpu":
            return f"{dev.platform}: {dev.device_kind}"
    elif BACKEND == "torch":
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"gpu: {gpus[0].name}"
    return f"cpu: {os.cpu_count()} cores ({platform.machine()})"


#: Peak memory bandwidth (GB/s) by GPU name fragment, used when it cannot be read.
KNOWN_BANDWIDTH_GBS = {
    "H200": 4800.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "H100": 3350.0,
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100": 1555.0,
    "L40S": 864.0,
    "L4": 300.0,
    "A10": 600.0,
    "V100": 900.0,
    "T4": 320.0,
}


def gpu_bandwidth_gbs() -> Optional[tuple[float, str]]:
    """Peak device memory bandwidth in GB/s and how it was found, or None on a CPU.

    `2 * memory clock (Hz) * bus width (bits) / 8` (double data rate, as HBM
    and GDDR report their clock) from `torch.cuda.get_device_properties` where
    it has the fields, else `nvidia-smi`'s maximum memory clock with the bus
    width of a known part, else a table of published figures by name.
    """
    env = os.environ.get("MDN_BENCH_BANDWIDTH_GBS")
    if env:
        return float(env), "MDN_BENCH_BANDWIDTH_GBS"
    name = None
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            name = props.name
            clock_khz = getattr(props, "memory_clock_rate", None)
            bus_bits = getattr(props, "memory_bus_width", None)
            if clock_khz and bus_bits:
                return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9, (
                    "torch.cuda.get_device_properties: "
                    f"2 x {clock_khz / 1e3:.0f} MHz x {bus_bits} bit / 8"
                )
    except Exception:  # noqa: BLE001 - torch absent or without CUDA
        pass
    if name is None:
        try:
            name = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=20,
                )
                .stdout.strip()
                .splitlines()[0]
            )
        except Exception:  # noqa: BLE001 - no NVIDIA driver
            return None
    for fragment, gbs in KNOWN_BANDWIDTH_GBS.items():
        if fragment.lower() in name.lower():
            return gbs, f"published figure for {name}"
    return None


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; columns after the first two are right-aligned."""
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
