"""The 1-D cdf and quantile with elementwise ops only, for export to any runtime.

`mdn_keras.mixture_cdf` uses `keras.ops.erfc`, which TFLite has no builtin
kernel for (it needs the Flex delegate), and `mixture_quantile` loops with
`fori_loop` (a `While` op; on JAX a construct some exporters cannot serve).
These twins compute the same quantities from `exp`, `abs`, `where`,
`softmax`, `sum`, `min` and `max` only, with the bisection unrolled, so a
model that ends in them converts to TFLite with builtin ops and to ONNX on
every backend. The mean (`mixture_mean`) and `log_prob` need no twin: they
use builtin ops already.

Gaussian cdfs (`"normal"`, `"mvn_tril"` marginals) use a rational-exponential
`erfc` approximation with relative error below `1.2e-7` over the whole line
(Numerical Recipes' `erfcc`), which is float32's own precision; `"laplace"`
uses its exact closed form. `"student_t"` has no elementwise cdf (it needs the
incomplete beta function): `ValueError`.
"""

from __future__ import annotations

import math
from typing import Union

from keras import ops

from mdn_keras.density import check_target
from mdn_keras.families import ComponentLike, Family
from mdn_keras.params import check_positive_int
from mdn_keras.statistics import (
    DEFAULT_QUANTILE_ITERATIONS,
    _check_1d,
    _check_open_unit,
    _split,
    mixing_probs,
)
from mdn_keras.types import Tensor

# Numerical Recipes' erfcc: erfc(x) = t exp(-x^2 + P(t)), t = 1 / (1 + x / 2), x >= 0.
_ERFC_COEF = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)
_GAUSSIAN = ("normal", "mvn_tril")
_CLOSED_FORM = ("laplace",)


def portable_erfc(x: Tensor) -> Tensor:
    """`erfc(x)` elementwise, relative error below `1.2e-7`, from `exp` and arithmetic only."""
    z = ops.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = _ERFC_COEF[-1]
    for c in reversed(_ERFC_COEF[:-1]):
        poly = c + t * poly
    tail = t * ops.exp(-z * z + poly)
    return ops.where(x >= 0, tail, 2.0 - tail)


def _check_family(name: str, family: Family) -> None:
    if family.name not in _GAUSSIAN + _CLOSED_FORM:
        raise ValueError(
            f"`{name}` has an elementwise cdf for the families "
            f"{sorted(_GAUSSIAN + _CLOSED_FORM)}. Received: component={family.name!r} "
            "(its cdf needs special functions; use `mdn_keras.mixture_cdf` or `to_tfp`)"
        )


def _marginal_cdf(family: Family, probs: Tensor, parts: tuple, y: Tensor) -> Tensor:
    """`sum_k probs_k F_kd(y_d)`: `(..., K)` probs, `(..., D)` y -> `(..., D)`."""
    y = ops.expand_dims(y, -2)
    if family.name in _GAUSSIAN:
        component_cdf = 0.5 * portable_erfc(
            (parts[0] - y) / (family.spread(parts) * math.sqrt(2.0))
        )
    else:
        component_cdf = family.cdf(parts, y)
    return ops.sum(ops.expand_dims(probs, -1) * component_cdf, axis=-2)


def portable_cdf(
    params: Tensor,
    y: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> Tensor:
    """`P(Y <= y)` for a 1-D mixture, as `mdn_keras.mixture_cdf`, with elementwise ops only.

    Args:
        params: `(..., params_size(1, num_mixtures, component))` flat MDN output.
        y: `(..., 1)` or `(...)` values whose leading axes broadcast with
            `params.shape[:-1]`.
        output_dim: must be 1.
        num_mixtures: `K`.
        component: `"normal"`, `"mvn_tril"` or `"laplace"`.

    Returns:
        `(...)`, in `[0, 1]`.
    """
    _check_1d("portable_cdf", output_dim)
    family, params, logits, parts = _split(params, output_dim, num_mixtures, component)
    _check_family("portable_cdf", family)
    y = check_target(y, params, output_dim)
    return _marginal_cdf(family, mixing_probs(logits), parts, y)[..., 0]


def portable_quantile(
    params: Tensor,
    q: Union[float, Tensor],
    output_dim: int,
    num_mixtures: int,
    num_iterations: int = DEFAULT_QUANTILE_ITERATIONS,
    component: ComponentLike = "normal",
) -> Tensor:
    """The `q`-quantile of a 1-D mixture, as `mdn_keras.mixture_quantile`, unrolled.

    The same bisection on the same bracket, `num_iterations` steps written
    out (no loop op), on `portable_cdf`.

    Args:
        params: `(..., params_size(1, num_mixtures, component))` flat MDN output.
        q: probabilities in `(0, 1)`, a number or a tensor broadcasting with
            `params.shape[:-1]`.
        output_dim: must be 1.
        num_mixtures: `K`.
        num_iterations: bisection steps, a positive int (each adds a few ops
            to an exported graph; 64 reaches float32 and float64 spacing).
        component: `"normal"`, `"mvn_tril"` or `"laplace"`.

    Returns:
        Quantiles of shape `broadcast(q.shape, params.shape[:-1])`.
    """
    _check_1d("portable_quantile", output_dim)
    check_positive_int("num_iterations", num_iterations)
    _check_open_unit("q", q)
    family, _, logits, parts = _split(params, output_dim, num_mixtures, component)
    _check_family("portable_quantile", family)
    probs = mixing_probs(logits)
    loc, spread = parts[0][..., 0], family.spread(parts)[..., 0]
    q = ops.cast(ops.convert_to_tensor(q), logits.dtype)
    width = family.quantile_bracket * spread
    lo = ops.min(loc - width, axis=-1) + ops.zeros_like(q)
    hi = ops.max(loc + width, axis=-1) + ops.zeros_like(q)
    for _ in range(num_iterations):
        mid = 0.5 * (lo + hi)
        below = _marginal_cdf(family, probs, parts, mid[..., None])[..., 0] < q
        lo, hi = ops.where(below, mid, lo), ops.where(below, hi, mid)
    return 0.5 * (lo + hi)
