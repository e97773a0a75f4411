"""The flat parameter layout of an MDN head, and the scale activations.

An `MDN` layer emits one flat tensor on its last axis. With `K = num_mixtures`,
`D = output_dim` and the default `"normal"` component family, it holds
`num_mixtures * (2 * output_dim + 1)` values:

    params[..., 0 : K*D]          loc    (means), component-major: loc[k, d] at k*D + d
    params[..., K*D : 2*K*D]      scale  (positive standard deviations), same order
    params[..., 2*K*D : ]         logits (mixing weights before softmax)

This is the same order as `keras-mdn-layer` (mus, sigmas, pis), so tensors
produced by either package can be read by the other's functions. Other
families (`component=`, see `mdn_keras.families`) put their parts' blocks in
order, component-major inside each block, and the `K` logits last.
`split_params` is the one place that reads the layout.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
from keras import ops

from mdn_keras.checks import is_int, is_real
from mdn_keras.families import ComponentLike, Family, Normal, get_family
from mdn_keras.shapes import shape_str, split_last
from mdn_keras.special import softplus
from mdn_keras.types import Tensor

SCALE_ACTIVATIONS = ("softplus", "exp", "elu_plus_one")
#: Ceiling used by the `exp` activation when `max_scale=None`: exp(log-variance)
#: overflows float32 for a log-variance above ~88, so that activation is always bounded.
DEFAULT_EXP_MAX_SCALE = 1e4


def params_size(output_dim: int, num_mixtures: int, component: ComponentLike = "normal") -> int:
    """Number of values an MDN head emits.

    `num_mixtures * (2 * output_dim + 1)` for `"normal"` and `"laplace"`,
    `num_mixtures * (3 * output_dim + 1)` for `"student_t"`,
    `num_mixtures * (output_dim + output_dim * (output_dim + 1) / 2 + 1)` for `"mvn_tril"`.
    """
    output_dim = check_positive_int("output_dim", output_dim)
    num_mixtures = check_positive_int("num_mixtures", num_mixtures)
    return get_family(component).params_size(output_dim, num_mixtures)


def check_positive_int(name: str, value: object) -> int:
    """`value` as a Python int; a Python or NumPy integer >= 1 (not a bool)."""
    if not is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive "
            f"integer. Received: {name}={value!r}"
        )
    return int(value)  # type: ignore[call-overload]


def check_params(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Tensor:
    """Converts `params` to a floating tensor and checks its last axis statically."""
    family = get_family(component)
    size = params_size(output_dim, num_mixtures, family)
    params = ops.convert_to_tensor(params)
    check_floating("params", params)
    shape = tuple(params.shape)
    if len(shape) < 1 or (shape[-1] is not None and shape[-1] != size):
        formula = family.layout_formula()
        numbers = formula.replace("num_mixtures", str(num_mixtures)).replace(
            "output_dim", str(output_dim)
        )
        which = "" if family == Normal() else f" for component={family.name!r}"
        raise ValueError(
            f"Expected params.shape[-1] == {formula} = {numbers} = {size}{which}. "
            f"Received: params.shape={shape_str(shape)}"
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


def split_params(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> tuple:
    """Splits a flat MDN output into `(logits, *parts)`.

    Args:
        params: tensor of shape `(..., params_size(output_dim, num_mixtures, component))`,
            laid out as described in this module's docstring.
        output_dim: `D`, the dimension of the predicted variable.
        num_mixtures: `K`, the number of components.
        component: the component family: `"normal"` (default), `"laplace"`,
            `"student_t"`, `"mvn_tril"` or a `mdn_keras.families.Family`.

    Returns:
        `logits` of shape `(..., K)` (mixing logits before softmax), then the
        family's parts:

        * `"normal"`, `"laplace"`: `loc`, `scale`, each `(..., K, D)`;
        * `"student_t"`: `loc`, `scale`, `df`, each `(..., K, D)`;
        * `"mvn_tril"`: `loc` `(..., K, D)` and `scale_tril` `(..., K, D, D)`
          (lower triangular, zeros above the diagonal).

    Raises:
        ValueError: if `params` is not floating-point or its last axis has
            the wrong size.
    """
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    logits, parts = split_unchecked(params, output_dim, num_mixtures, family)
    return (logits, *parts)


def split_unchecked(
    params: Tensor, output_dim: int, num_mixtures: int, family: Family, contiguous: bool = True
) -> tuple:
    """`(logits, parts)` of checked `params` (one split of the last axis).

    `contiguous` (PyTorch only; see `split_last`): each block in memory of its
    own, for callers that take `log` or `exp` of the blocks themselves.
    """
    sizes = [num_mixtures * size for size in family.part_sizes(output_dim)]
    blocks = split_last(params, [*sizes, num_mixtures], contiguous=contiguous)
    return blocks[-1], family.unflatten(blocks[:-1], output_dim, num_mixtures)


def join_params(logits: Tensor, *parts: Tensor, component: ComponentLike = "normal") -> Tensor:
    """Inverse of `split_params`: `(..., K)` logits and the family's parts -> flat params.

    Example: `join_params(logits, loc, scale)` for `"normal"`,
    `join_params(logits, loc, scale, df, component="student_t")`.
    """
    family = get_family(component)
    logits = ops.convert_to_tensor(logits)
    parts = tuple(ops.convert_to_tensor(p) for p in parts)
    names = ("logits", *family.part_names)
    if len(parts) != len(family.part_names):
        raise ValueError(
            f"Expected {len(names)} tensors {names} for the {family.name!r} family. "
            f"Received: {1 + len(parts)} tensors"
        )
    loc = parts[0]
    shapes = ", ".join(
        f"{n}.shape={shape_str(tuple(t.shape))}"
        for n, t in zip(names, (logits, *parts), strict=False)
    )
    if len(loc.shape) < 2 or tuple(logits.shape) != tuple(loc.shape[:-1]):
        raise ValueError(
            f"Expected logits.shape == (..., K) and loc.shape == (..., K, D). Received: {shapes}"
        )
    output_dim = loc.shape[-1]
    family.check_parts(parts, output_dim)
    batch = tuple(loc.shape[:-1])
    for part, ndims in zip(parts, family.part_event_ndims(), strict=True):
        if tuple(part.shape[: len(part.shape) - ndims]) != batch:
            raise ValueError(
                f"Expected every part to have the leading shape (..., K) = {shape_str(batch)}. "
                f"Received: {shapes}"
            )
    dtypes = [keras.backend.standardize_dtype(t.dtype) for t in parts]
    if "float" not in dtypes[0] or len(set(dtypes)) != 1:
        # All dtypes in one message: a lone check_floating would name only one.
        received = ", ".join(f"{n}.dtype={d}" for n, d in zip(names[1:], dtypes, strict=True))
        raise ValueError(
            "Expected "
            + " and ".join(f"`{n}`" for n in names[1:])
            + f" to be floating-point tensors of the same dtype. Received: {received}"
        )
    blocks = family.flatten(parts, output_dim)
    return ops.concatenate([*blocks, ops.cast(logits, loc.dtype)], axis=-1)


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
        scale = softplus(raw) + min_scale
    else:
        # exp of the clipped value: the unused branch never overflows, so its
        # gradient is never inf * 0.
        scale = ops.where(raw > 0, raw + 1.0, ops.exp(ops.minimum(raw, 0.0))) + min_scale
    if max_scale is not None:
        scale = ops.minimum(scale, max_scale)
    return scale
