"""The flat parameter layout of an MDN head, and the scale activations.

An `MDN` layer emits one flat tensor of `num_mixtures * (2 * output_dim + 1)`
values on its last axis. With `K = num_mixtures` and `D = output_dim`:

    params[..., 0 : K*D]          loc    (means), component-major: loc[k, d] at k*D + d
    params[..., K*D : 2*K*D]      scale  (positive standard deviations), same order
    params[..., 2*K*D : ]         logits (mixing weights before softmax)

This is the same order as `keras-mdn-layer` (mus, sigmas, pis), so tensors
produced by either package can be read by the other's functions.
`split_params` is the one place that reads the layout.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
from keras import ops

from mdn_keras.checks import is_int, is_real
from mdn_keras.types import Shape, Tensor

SCALE_ACTIVATIONS = ("softplus", "exp", "elu_plus_one")
#: Ceiling used by the `exp` activation when `max_scale=None`: exp(log-variance)
#: overflows float32 for a log-variance above ~88, so that activation is always bounded.
DEFAULT_EXP_MAX_SCALE = 1e4


def params_size(output_dim: int, num_mixtures: int) -> int:
    """Number of values an MDN head emits: `num_mixtures * (2 * output_dim + 1)`."""
    output_dim = check_positive_int("output_dim", output_dim)
    num_mixtures = check_positive_int("num_mixtures", num_mixtures)
    return num_mixtures * (2 * output_dim + 1)


def check_positive_int(name: str, value: object) -> int:
    """`value` as a Python int; a Python or NumPy integer >= 1 (not a bool)."""
    if not is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive "
            f"integer. Received: {name}={value!r}"
        )
    return int(value)  # type: ignore[call-overload]


def _shape_str(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_params(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """Converts `params` to a floating tensor and checks its last axis statically."""
    size = params_size(output_dim, num_mixtures)
    params = ops.convert_to_tensor(params)
    check_floating("params", params)
    shape = tuple(params.shape)
    if len(shape) < 1 or (shape[-1] is not None and shape[-1] != size):
        raise ValueError(
            "Expected params.shape[-1] == num_mixtures * (2 * output_dim + 1) = "
            f"{num_mixtures} * (2 * {output_dim} + 1) = {size}. "
            f"Received: params.shape={_shape_str(shape)}"
        )
    return params


def check_floating(name: str, x: Tensor) -> str:
    """Raises unless tensor `x` is floating-point; returns its dtype name."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    if "float" not in dtype:
        raise ValueError(
            f"Expected `{name}` to be a floating-point tensor. Received: {name}.dtype={dtype}"
        )
    return dtype


def lead_shape(x: Tensor, n_trailing: int) -> tuple:
    """`x.shape` without its last `n_trailing` axes, in a form `ops.reshape` takes.

    Static where known; one unknown axis becomes -1; several use the dynamic shape.
    """
    static = tuple(x.shape)[: len(x.shape) - n_trailing]
    unknown = sum(dim is None for dim in static)
    if unknown == 0:
        return static
    if unknown == 1:
        return tuple(-1 if dim is None else dim for dim in static)
    return tuple(ops.shape(x))[: len(static)]


def split_params(
    params: Tensor, output_dim: int, num_mixtures: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Splits a flat MDN output into `(logits, loc, scale)`.

    Args:
        params: tensor of shape `(..., num_mixtures * (2 * output_dim + 1))`,
            laid out as described in this module's docstring.
        output_dim: `D`, the dimension of the predicted variable.
        num_mixtures: `K`, the number of Gaussian components.

    Returns:
        `logits` of shape `(..., K)`: mixing logits before softmax;
        `loc` of shape `(..., K, D)`: component means;
        `scale` of shape `(..., K, D)`: component standard deviations.

    Raises:
        ValueError: if `params` is not floating-point or its last axis is not
            `num_mixtures * (2 * output_dim + 1)`.
    """
    params = check_params(params, output_dim, num_mixtures)
    loc_scale = loc_scale_view(params, output_dim, num_mixtures)
    return (
        split_logits(params, output_dim, num_mixtures),
        loc_scale[..., 0, :, :],
        loc_scale[..., 1, :, :],
    )


def loc_scale_view(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """`(..., 2, K, D)`: `[..., 0]` the means, `[..., 1]` the scales (no checks)."""
    k, d = num_mixtures, output_dim
    return ops.reshape(params[..., : 2 * k * d], (*lead_shape(params, 1), 2, k, d))


def split_logits(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """`(..., K)` mixing logits (no checks)."""
    return params[..., 2 * num_mixtures * output_dim :]


def join_params(logits: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Inverse of `split_params`: `(..., K)`, `(..., K, D)`, `(..., K, D)` -> `(..., K*(2D+1))`."""
    logits = ops.convert_to_tensor(logits)
    loc = ops.convert_to_tensor(loc)
    scale = ops.convert_to_tensor(scale)
    if (
        len(loc.shape) < 2
        or tuple(loc.shape) != tuple(scale.shape)
        or (tuple(logits.shape) != tuple(loc.shape[:-1]))
    ):
        raise ValueError(
            "Expected logits.shape == (..., K) and loc.shape == scale.shape == "
            f"(..., K, D). Received: logits.shape={_shape_str(tuple(logits.shape))}, "
            f"loc.shape={_shape_str(tuple(loc.shape))}, "
            f"scale.shape={_shape_str(tuple(scale.shape))}"
        )
    dtypes = [keras.backend.standardize_dtype(t.dtype) for t in (loc, scale)]
    if "float" not in dtypes[0] or dtypes[0] != dtypes[1]:
        # Both dtypes in one message: a lone check_floating would name only one.
        raise ValueError(
            "Expected `loc` and `scale` to be floating-point tensors of the same dtype. "
            f"Received: loc.dtype={dtypes[0]}, scale.dtype={dtypes[1]}"
        )
    lead = lead_shape(loc, 2)
    k, d = loc.shape[-2], loc.shape[-1]
    flat = lambda t: ops.reshape(t, (*lead, k * d))  # noqa: E731
    return ops.concatenate([flat(loc), flat(scale), ops.cast(logits, loc.dtype)], axis=-1)


def check_scale_options(
    scale_activation: str, min_scale: float, max_scale: Optional[float]
) -> None:
    if scale_activation not in SCALE_ACTIVATIONS:
        raise ValueError(
            f"Expected `scale_activation` to be one of {SCALE_ACTIVATIONS}. "
            f"Received: scale_activation={scale_activation!r}"
        )
    if not is_real(min_scale) or not (min_scale > 0 and math.isfinite(min_scale)):
        raise ValueError(
            f"Expected `min_scale` to be a finite number > 0. Received: min_scale={min_scale!r}"
        )
    if max_scale is not None and (
        not is_real(max_scale) or not math.isfinite(max_scale) or max_scale <= min_scale
    ):
        raise ValueError(
            "Expected `max_scale` to be None or a finite number > min_scale "
            f"({min_scale}). Received: max_scale={max_scale!r}"
        )


def scale_from_raw(
    raw: Tensor,
    scale_activation: str = "softplus",
    min_scale: float = 1e-4,
    max_scale: Optional[float] = None,
) -> Tensor:
    """Maps unconstrained values to positive standard deviations.

    * `"softplus"` (default): `softplus(raw) + min_scale`. Grows linearly, so
      no input overflows, and its gradient `sigmoid(raw)` never explodes.
    * `"exp"`: `raw` is a log-variance, clipped to
      `[2 log(min_scale), 2 log(max_scale)]`, then `scale = exp(raw / 2)`.
      Outside the clip the gradient is zero. `max_scale=None` means 1e4 here.
    * `"elu_plus_one"`: `elu(raw) + 1 + min_scale`, as in keras-mdn-layer
      (whose floor is 1e-7: pass `min_scale=1e-7` to reproduce its scales
      exactly; the default 1e-4 gives scales about 1e-4 larger), computed as
      `raw + 1` (raw > 0) or `exp(raw)` (raw <= 0): the same function
      without the cancellation of `elu(raw) + 1`, which loses all float32
      digits of small scales (elu(-10) + 1 keeps ~3 digits).

    A finite `max_scale` caps every activation with `minimum(scale, max_scale)`.

    Args:
        raw: tensor of any shape.

    Returns:
        Tensor of the same shape and dtype, with values in
        `[min_scale, max_scale]`.
    """
    check_scale_options(scale_activation, min_scale, max_scale)
    # Python floats: a NumPy scalar on the left of a torch tensor would make NumPy arrays.
    min_scale = float(min_scale)
    max_scale = None if max_scale is None else float(max_scale)
    if not hasattr(raw, "dtype"):
        raw = ops.convert_to_tensor(raw)
    check_floating("raw", raw)
    if scale_activation == "exp":
        hi = DEFAULT_EXP_MAX_SCALE if max_scale is None else max_scale
        log_var = ops.clip(raw, 2.0 * math.log(min_scale), 2.0 * math.log(hi))
        return ops.exp(0.5 * log_var)
    if scale_activation == "softplus":
        scale = ops.softplus(raw) + min_scale
    else:
        # exp of the clipped value: the unused branch never overflows, so its
        # gradient is never inf * 0.
        scale = ops.where(raw > 0, raw + 1.0, ops.exp(ops.minimum(raw, 0.0))) + min_scale
    if max_scale is not None:
        scale = ops.minimum(scale, max_scale)
    return scale
