"""Vectorised sampling from the mixture an MDN head predicts."""

from __future__ import annotations

import math
from typing import Union

import keras
import numpy as np
from keras import ops

from mdn_keras.checks import is_int, is_real, per_row_value
from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import check_params, split_unchecked
from mdn_keras.shapes import lead_shape
from mdn_keras.types import Seed, Tensor

# Smallest uniform draw for the Gumbel noise: keeps -log(-log(u)) finite.
_TINY = 1e-20


def check_temperature(name: str, value: object) -> None:
    """Checks a Python or NumPy number temperature statically (tensors are taken as given)."""
    if isinstance(value, (bool, np.bool_)):
        ok = False
    elif is_real(value):
        number = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(number) and number >= 0
    else:
        return
    if not ok:
        raise ValueError(
            f"Expected `{name}` to be a finite number >= 0. Received: {name}={value!r}"
        )


def split_seed(seed: Seed) -> tuple[Seed, Seed]:
    """Two independent seeds from one user seed, valid in `jax.jit` and `tf.function`.

    An int gives two fixed ints (so the same int always gives the same draw);
    a `keras.random.SeedGenerator` is returned twice (it advances on each use);
    None uses Keras' global generator.
    """
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed, seed
    if not is_int(seed):
        raise ValueError(
            "Expected `seed` to be an int, a keras.random.SeedGenerator or None. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    seed = int(seed)  # a NumPy integer, e.g. from `rng.integers`
    if not 0 <= seed < 2**32:
        # JAX's keys take unsigned 32-bit seeds; the other backends would wrap silently.
        raise ValueError(f"Expected an int `seed` in [0, 2**32). Received: seed={seed}")
    # A second, decorrelated 32-bit seed (Knuth's multiplicative hash).
    return seed, (seed * 2654435761 + 1) % (2**32)


def gumbel_argmax(logits: Tensor, temperature: Union[float, Tensor], seed: Seed) -> Tensor:
    """Indices drawn from `Categorical(logits / temperature)` over the last axis.

    Uses the Gumbel-max trick `argmax(logits + temperature * g)`, which equals
    `argmax(logits / temperature + g)` for `temperature > 0` and is the plain
    argmax for `temperature == 0`; no division, so no special case.
    """
    u = keras.random.uniform(ops.shape(logits), _TINY, 1.0, dtype=logits.dtype, seed=seed)
    gumbel = -ops.log(-ops.log(u))
    if not isinstance(temperature, float):
        temperature = ops.expand_dims(temperature, -1)  # per row: (...) -> (..., 1)
    return ops.argmax(logits + temperature * gumbel, axis=-1)


def choose_component(logits: Tensor, temperature: Union[float, Tensor], seed: Seed) -> Tensor:
    """`(...)` component indices drawn from `Categorical(logits / temperature)`.

    Gumbel-max everywhere except one case: on JAX with a Python-number
    temperature > 0, `keras.random.categorical` is one fused kernel, while
    eager Gumbel-max runs six separate passes (2.5x slower outside `jax.jit`;
    equal inside). PyTorch's categorical (multinomial) is slower than
    Gumbel-max, so it is not used there. Both draw from the same distribution.
    """
    fused = keras.backend.backend() == "jax" and isinstance(temperature, float) and temperature > 0
    if not fused:
        return gumbel_argmax(logits, temperature, seed)
    num_mixtures = logits.shape[-1]
    flat = ops.reshape(logits, (-1, num_mixtures)) / temperature
    index = keras.random.categorical(flat, 1, seed=seed, dtype="int32")
    return ops.reshape(index, lead_shape(logits, 1))


def select_component(values: Tensor, index: Tensor, event_ndims: int = 1) -> Tensor:
    """`values[..., index, :]` for `(..., K, *event)` values and `(...)` indices.

    `event_ndims` is the rank of `event`: 1 for `(..., K, D)` parts, 2 for
    `(..., K, D, D)`. A gather (`take_along_axis`): on CPUs it is several
    times faster than multiplying by a one-hot mask, and on GPUs it is as fast.
    Extra axes between the leading ones and `(K, *event)` are broadcast:
    values of shape `(..., M, K, D)` give `(..., M, D)`.
    """
    extra = len(values.shape) - len(index.shape)
    index = ops.reshape(index, (*lead_shape(index, 0), *([1] * extra)))
    axis = -1 - event_ndims
    return ops.squeeze(ops.take_along_axis(values, index, axis=axis), axis=axis)


def sample(
    params: Tensor,
    output_dim: int,
    num_mixtures: int,
    *,
    temperature: Union[float, Tensor] = 1.0,
    sigma_temperature: Union[float, Tensor] = 1.0,
    seed: Seed = None,
    component: ComponentLike = "normal",
) -> Tensor:
    """Draws one sample per row from the mixture in `params`.

    A component is picked from `Categorical(softmax(logits / temperature))`,
    then a point from that component with its covariance multiplied by
    `sigma_temperature` (for the default `"normal"` family,
    `N(loc_k, diag(scale_k^2 * sigma_temperature))`: the convention of World
    Models and keras-mdn-layer).

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        temperature: `>= 0`; divides the mixing logits. `0` always picks the
            most probable component, large values pick uniformly.
        sigma_temperature: `>= 0`; multiplies each component's covariance
            (its scale by `sqrt(sigma_temperature)`). `0` returns the chosen
            component's location.
        seed: a Python or NumPy int in [0, 2**32) (the same int gives the same draw), a
            `keras.random.SeedGenerator`, or None (Keras' global generator;
            not allowed inside `jax.jit`).
        component: the component family (`"normal"` by default).

    Temperatures: each is a number, a 0-d array/tensor, or one value per
    row, of shape `params.shape[:-1]`, the same rule on every backend for
    Python numbers, NumPy arrays and tensors alike; any other shape raises a
    `ValueError` naming both shapes. Python and NumPy values are checked to
    be finite and `>= 0`. Tensor values are not checked (they may only be
    known inside a compiled graph): a row whose tensor temperature is
    negative, infinite or NaN gets a NaN sample.

    Returns:
        `(..., D)` samples in `params.dtype`.
    """
    check_temperature("temperature", temperature)
    check_temperature("sigma_temperature", sigma_temperature)
    family = get_family(component)
    seed_component, seed_noise = split_seed(seed)
    params = check_params(params, output_dim, num_mixtures, family)
    temperature = per_row_value("temperature", temperature, params)
    sigma_temperature = per_row_value("sigma_temperature", sigma_temperature, params)
    logits, parts = split_unchecked(params, output_dim, num_mixtures, family)
    index = choose_component(logits, temperature, seed_component)
    chosen = tuple(
        select_component(part, index, ndims)
        for part, ndims in zip(parts, family.part_event_ndims(), strict=True)
    )
    if isinstance(sigma_temperature, float):
        sigma_scale = math.sqrt(sigma_temperature)
    else:  # per row: (...) -> (..., 1)
        sigma_scale = ops.sqrt(ops.maximum(ops.expand_dims(sigma_temperature, -1), 0.0))
    draw = family.sample(chosen, sigma_scale, seed_noise)
    tensors = [t for t in (temperature, sigma_temperature) if not isinstance(t, float)]
    if not tensors:
        return draw
    valid = ops.expand_dims(_valid_temperature(tensors[0]), -1)
    for t in tensors[1:]:
        valid = ops.logical_and(valid, ops.expand_dims(_valid_temperature(t), -1))
    return ops.where(valid, draw, ops.full_like(draw, math.nan))


def _valid_temperature(t: Tensor) -> Tensor:
    """True where a tensor temperature is finite and `>= 0` (False for NaN)."""
    return ops.logical_and(ops.isfinite(t), t >= 0)
