"""The 1-D cdf and quantile with elementwise ops only, for export to any runtime.

`mdn_keras.mixture_cdf` uses `keras.ops.erfc`, which TFLite has no builtin
kernel for (it needs the Flex delegate), and `mixture_quantile` loops with
`fori_loop` (a `While` op; on JAX a construct some exporters cannot serve).
These twins compute the same quantities through the same code with
`portable=True`: the family's cdf from elementwise ops only (Gaussian cdfs
through `mdn_keras.special.erfc_elementwise`, relative error below `1.2e-7`
over the whole line, float32's own precision; `"laplace"` is elementwise
already) and the bisection unrolled. A model that ends in them converts to
TFLite with builtin ops and to ONNX on every backend. The mean
(`mixture_mean`) and `log_prob` need no twin: they use builtin ops already.
`"student_t"` has no elementwise cdf (it needs the incomplete beta function's
loop): `ValueError`.
"""

from __future__ import annotations

from typing import Union

from mdn_keras.checks import levels
from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import check_params, check_positive_int
from mdn_keras.special import erfc_elementwise
from mdn_keras.statistics import (
    DEFAULT_QUANTILE_ITERATIONS,
    _bisect_quantile,
    _check_1d,
    _checked_marginal_cdf,
)
from mdn_keras.symbolic import accepts_symbolic
from mdn_keras.types import Tensor

#: `erfc` from elementwise ops only; see `mdn_keras.special.erfc_elementwise`.
portable_erfc = erfc_elementwise


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

    Raises:
        ValueError: for `"student_t"` (no elementwise cdf), or bad shapes.
    """
    _check_1d("portable_cdf", output_dim)
    return _checked_marginal_cdf(params, y, output_dim, num_mixtures, component, portable=True)[
        ..., 0
    ]


@accepts_symbolic
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
    out (no loop op), on the elementwise cdf of `portable_cdf`. `q` follows
    `mixture_quantile`'s shape rule.

    Args:
        params: `(..., params_size(1, num_mixtures, component))` flat MDN output.
        q: probabilities in `(0, 1)`: a number or 0-d array/tensor, `(Q,)`, or
            `(Q, *params.shape[:-1])`; a tensor level outside `(0, 1)` gives NaN.
        output_dim: must be 1.
        num_mixtures: `K`.
        num_iterations: bisection steps, a positive int (each adds a few ops
            to an exported graph; 64 reaches float32 and float64 spacing).
        component: `"normal"`, `"mvn_tril"` or `"laplace"`.

    Returns:
        Quantiles of shape `params.shape[:-1]`, or `(Q, *params.shape[:-1])`.

    Raises:
        ValueError: for `"student_t"`, a Python/NumPy level outside `(0, 1)`,
            or another shape of `q`.
    """
    _check_1d("portable_quantile", output_dim)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    q = levels("q", q, params)
    return _bisect_quantile(family, params, q, num_mixtures, num_iterations, portable=True)
