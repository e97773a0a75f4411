"""Summary statistics of the mixture an MDN head predicts, in `keras.ops` only.

With `pi = softmax(logits)` and components `N(loc_k, diag(scale_k^2))`:

    mean      E[y]   = sum_k pi_k loc_k
    variance  Var[y] = sum_k pi_k (scale_k^2 + (loc_k - E[y])^2)   (per dimension)
    mode      argmax_y p(y), by a fixed-point (mean-shift) iteration
    cdf       F(y)   = sum_k pi_k Phi((y - loc_k) / scale_k)        (output_dim == 1)
    quantile  F^-1(q), by bisection on F                            (output_dim == 1)

Every function takes `(params, output_dim, num_mixtures, ...)` with `params` of
shape `(..., num_mixtures * (2 * output_dim + 1))` (any number of leading axes)
and works on the TensorFlow, JAX and PyTorch backends, inside `jax.jit` and
`tf.function` too. TensorFlow Probability is not needed.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
from keras import ops

from mdn_keras.checks import is_real, levels
from mdn_keras.density import check_target, component_log_prob, log_prob
from mdn_keras.params import check_params, check_positive_int, split_params
from mdn_keras.sampling import select_component
from mdn_keras.types import Tensor

#: Half-width, in component standard deviations, of the bracket `mixture_quantile`
#: bisects: Phi(-40) underflows float32 and float64, so F is exactly 0 and 1 at its ends.
QUANTILE_BRACKET_SCALES = 40.0
#: Bisection steps of `mixture_quantile`: the bracket shrinks by 2^-64, below the
#: float32 and float64 spacing of any value in it, so the result is exact to the
#: resolution of `mixture_cdf`.
DEFAULT_QUANTILE_ITERATIONS = 64
DEFAULT_MODE_ITERATIONS = 200
DEFAULT_MODE_TOLERANCE = 1e-6


def mixing_probs(logits: Tensor) -> Tensor:
    """`softmax(logits)` over the last axis (also for a single component, without warning)."""
    return ops.exp(logits - ops.logsumexp(logits, axis=-1, keepdims=True))


def mixture_mean(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """The mixture mean `E[y] = sum_k pi_k loc_k`.

    Args:
        params: `(..., num_mixtures * (2 * output_dim + 1))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.

    Returns:
        `(..., D)`.
    """
    logits, loc, _ = split_params(params, output_dim, num_mixtures)
    probs = ops.expand_dims(mixing_probs(logits), -1)
    return ops.sum(probs * loc, axis=-2)


def mixture_variance(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """Per-dimension variance of the mixture (the diagonal of its covariance).

    Args:
        params: `(..., num_mixtures * (2 * output_dim + 1))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.

    Returns:
        `(..., D)`: `sum_k pi_k (scale_k^2 + (loc_k - mean)^2)`.
    """
    logits, loc, scale = split_params(params, output_dim, num_mixtures)
    probs = ops.expand_dims(mixing_probs(logits), -1)
    mean = ops.sum(probs * loc, axis=-2, keepdims=True)
    # Law of total variance, k the component:
    #     Var[y] = E[Var[y|k]] + Var[E[y|k]]
    #            = sum_k pi_k scale_k^2 + sum_k pi_k (loc_k - E[y])^2
    # summed as one non-negative sum (no E[y^2] - E[y]^2 cancellation).
    return ops.sum(probs * (ops.square(scale) + ops.square(loc - mean)), axis=-2)


def mixture_stddev(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """`sqrt(mixture_variance)`, per dimension: `(..., D)`."""
    return ops.sqrt(mixture_variance(params, output_dim, num_mixtures))


def most_probable_component_mean(params: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """`loc_k` of the component with the largest mixing weight: `(..., D)`.

    Ties go to the lowest component index. This is the common "sample with
    temperature 0" point estimate; it is not the mode of the mixture when
    components overlap (see `mixture_mode`).
    """
    logits, loc, _ = split_params(params, output_dim, num_mixtures)
    return select_component(loc, ops.argmax(logits, axis=-1))


def mixture_mode(
    params: Tensor,
    output_dim: int,
    num_mixtures: int,
    num_iterations: int = DEFAULT_MODE_ITERATIONS,
    tolerance: float = DEFAULT_MODE_TOLERANCE,
) -> Tensor:
    """The highest-density point of the mixture, `argmax_y p(y)`, found numerically.

    Runs the Gaussian-mixture mean-shift (an EM-style fixed-point iteration)

        x_d <- sum_k r_k(x) loc_kd / scale_kd^2  /  sum_k r_k(x) / scale_kd^2

    where `r_k(x)` are the posterior responsibilities (softmax of
    `component_log_prob` at `x`). A fixed point is a stationary point of
    `log p`. The iteration starts from every component mean at once (the `K`
    starts are an extra axis), so it finds every mode whose basin holds a
    component mean, which in practice is every mode worth having. The result
    is the end point with the highest `log_prob`, compared also with the `K`
    starting means, so it never has a lower density than the best component
    mean (between points whose float32 log-densities tie, either may win).

    The loop is `keras.ops.while_loop` with at most `num_iterations` updates
    (static shapes, so it compiles under `jax.jit` and `tf.function`); the
    whole batch stops early once no start moved by more than `tolerance`
    times the smallest component scale of its dimension in one update.
    Mean-shift converges linearly, slowly where two modes are about to merge;
    there the result is a point on the density's flat ridge. The mode is a
    point estimate, not meant to be differentiated (JAX cannot
    reverse-differentiate a while loop).

    Args:
        params: `(..., num_mixtures * (2 * output_dim + 1))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        num_iterations: maximum number of updates, a positive int.
        tolerance: stopping threshold, a number `>= 0`, relative to the scales.

    Returns:
        `(..., D)`, in `params.dtype`.
    """
    num_iterations = check_positive_int("num_iterations", num_iterations)
    if not is_real(tolerance) or not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(
            f"Expected `tolerance` to be a finite number >= 0. Received: tolerance={tolerance!r}"
        )
    tolerance = float(tolerance)
    params = check_params(params, output_dim, num_mixtures)
    _, loc, scale = split_params(params, output_dim, num_mixtures)
    # One copy of the mixture per start: (..., 1, P) against starts (..., K, D).
    params_s = ops.expand_dims(params, -2)
    precision = ops.expand_dims(1.0 / ops.square(scale), -3)  # (..., 1, K, D)
    weighted_loc = precision * ops.expand_dims(loc, -3)  # (..., 1, K, D)
    min_scale = ops.min(scale, axis=-2, keepdims=True)  # (..., 1, D)

    def update(x: Tensor) -> Tensor:
        # Posterior responsibilities r_k(x): (..., S, K, 1).
        resp = mixing_probs(component_log_prob(params_s, x, output_dim, num_mixtures))
        resp = ops.expand_dims(resp, -1)
        return ops.sum(resp * weighted_loc, axis=-2) / ops.sum(resp * precision, axis=-2)

    def cond(x: Tensor, step: Tensor) -> Tensor:
        return step > tolerance

    def body(x: Tensor, step: Tensor) -> tuple:
        x_new = update(x)
        return x_new, ops.max(ops.abs(x_new - x) / min_scale)

    start_step = ops.convert_to_tensor(np.inf, dtype=params.dtype)
    x, _ = ops.while_loop(cond, body, (loc, start_step), maximum_iterations=num_iterations)
    candidates = ops.concatenate([x, loc], axis=-2)  # (..., 2K, D)
    scores = log_prob(params_s, candidates, output_dim, num_mixtures)  # (..., 2K)
    return select_component(candidates, ops.argmax(scores, axis=-1))


def _check_1d(name: str, output_dim: int) -> None:
    check_positive_int("output_dim", output_dim)
    if output_dim != 1:
        raise ValueError(
            f"`{name}` is defined for 1-D outputs only. Expected output_dim == 1. "
            f"Received: output_dim={output_dim}"
        )


def _cdf_1d(probs: Tensor, loc: Tensor, scale: Tensor, y: Tensor) -> Tensor:
    """`sum_k probs_k Phi((y - loc_k) / scale_k)` for `(..., K)` parts and `(...)` y."""
    z = (ops.expand_dims(y, -1) - loc) / (scale * math.sqrt(2.0))
    return ops.sum(probs * 0.5 * (1.0 + ops.erf(z)), axis=-1)


def mixture_cdf(params: Tensor, y: Tensor, output_dim: int, num_mixtures: int) -> Tensor:
    """`P(Y <= y)` for a 1-D mixture: `sum_k pi_k Phi((y - loc_k) / scale_k)`.

    `Phi(z) = (1 + erf(z / sqrt(2))) / 2`. Its absolute error is about the
    float precision (~1e-7 in float32), so far-tail values are not accurate
    relative to their size; use `log_prob` for tail densities.

    Args:
        params: `(..., num_mixtures * 3)` flat MDN output with `output_dim == 1`.
        y: `(..., 1)` or `(...)` values whose leading axes broadcast with
            `params.shape[:-1]`.
        output_dim: must be 1.
        num_mixtures: `K`.

    Returns:
        `(...)`, in `[0, 1]`.

    Raises:
        ValueError: if `output_dim != 1` or the shapes do not match.
    """
    _check_1d("mixture_cdf", output_dim)
    params = check_params(params, output_dim, num_mixtures)
    y = check_target(y, params, output_dim)
    logits, loc, scale = split_params(params, output_dim, num_mixtures)
    return _cdf_1d(mixing_probs(logits), loc[..., 0], scale[..., 0], y[..., 0])


def mixture_quantile(
    params: Tensor,
    q: Union[float, Tensor],
    output_dim: int,
    num_mixtures: int,
    num_iterations: int = DEFAULT_QUANTILE_ITERATIONS,
) -> Tensor:
    """The `q`-quantile `F^-1(q)` of a 1-D mixture, by vectorised bisection.

    Bisects `mixture_cdf` on the bracket
    `[min_k(loc_k - 40 scale_k), max_k(loc_k + 40 scale_k)]`, where `F` is 0
    and 1 to float precision, for `num_iterations` steps (a fixed count, so it
    is jit-friendly). The default 64 halves the bracket below the float32 and
    float64 spacing, so the answer is as exact as `mixture_cdf` allows: where
    the density at the quantile is `p`, its error is about `1e-7 / p` in
    float32. Where `F` is flat at level `q` (a gap between components) any
    point of the flat stretch is a valid quantile.

    The shape rule for `q` is NumPy's (`numpy.quantile`), the same on every
    backend for Python numbers, NumPy arrays and tensors, plus a per-row form:

    * a number or a 0-d array/tensor: result of shape `params.shape[:-1]`;
    * shape `(Q,)`: result of shape `(Q, *params.shape[:-1])`, every level
      for every row (`Mixture.quantile([0.1, 0.9])` on 2 rows is `(2, 2)`);
    * shape `(Q, *params.shape[:-1])`: one level per row (and per entry of
      the first axis), result of the same shape; `q[None]` for one level per row.

    Any other shape raises a `ValueError` naming both shapes.

    Args:
        params: `(..., num_mixtures * 3)` flat MDN output with `output_dim == 1`.
        q: probabilities in `(0, 1)`, shaped as above. Python and NumPy values
            are checked; tensor values are not (they may only be known inside
            a compiled graph): a tensor level outside `(0, 1)`, or NaN, gives
            NaN at its position.
        output_dim: must be 1.
        num_mixtures: `K`.
        num_iterations: bisection steps, a positive int.

    Returns:
        Quantiles of shape `params.shape[:-1]` or `(Q, *params.shape[:-1])`,
        as above, in `params.dtype`.

    Raises:
        ValueError: if `output_dim != 1`, a Python-number or NumPy `q` is
            outside `(0, 1)`, or `q` has another shape.
    """
    _check_1d("mixture_quantile", output_dim)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    params = check_params(params, output_dim, num_mixtures)
    q = levels("q", q, params)
    return _bisect_quantile(params, q, num_mixtures, num_iterations)


def _bisect_quantile(params: Tensor, q: Tensor, num_mixtures: int, num_iterations: int) -> Tensor:
    """Quantiles at levels `q` that broadcast against `params.shape[:-1]` (no checks).

    Levels outside (0, 1), or NaN, give NaN.
    """
    logits, loc, scale = split_params(params, 1, num_mixtures)
    probs = mixing_probs(logits)
    loc, scale = loc[..., 0], scale[..., 0]
    lo = ops.min(loc - QUANTILE_BRACKET_SCALES * scale, axis=-1) + ops.zeros_like(q)
    hi = ops.max(loc + QUANTILE_BRACKET_SCALES * scale, axis=-1) + ops.zeros_like(q)

    def body(_: int, bracket: tuple) -> tuple:
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = _cdf_1d(probs, loc, scale, mid) < q
        return ops.where(below, mid, lo), ops.where(below, hi, mid)

    lo, hi = ops.fori_loop(0, num_iterations, body, (lo, hi))
    mid = 0.5 * (lo + hi)
    in_range = ops.logical_and(q > 0, q < 1)
    return ops.where(in_range, mid, ops.full_like(mid, math.nan))


def prediction_interval(
    params: Tensor, coverage: Union[float, Tensor], output_dim: int, num_mixtures: int
) -> tuple[Tensor, Tensor]:
    """The central `coverage` interval of a 1-D mixture.

    `lower = F^-1((1 - coverage) / 2)`, `upper = F^-1((1 + coverage) / 2)`,
    so `P(lower <= Y <= upper) = coverage` with equal mass left out on each
    side (see `mixture_quantile` for the tolerance).

    Args:
        params: `(..., num_mixtures * 3)` flat MDN output with `output_dim == 1`.
        coverage: in `(0, 1)`, e.g. 0.9, shaped by the rule of
            `mixture_quantile`: a number or 0-d array/tensor, `(Q,)` (every
            coverage for every row) or `(Q, *params.shape[:-1])` (one per row).
            Python and NumPy values are checked; a tensor coverage outside
            `(0, 1)`, or NaN, gives NaN ends at its position.
        output_dim: must be 1.
        num_mixtures: `K`.

    Returns:
        `(lower, upper)`, each of shape `params.shape[:-1]`, or
        `(Q, *params.shape[:-1])` for `Q` coverages.

    Raises:
        ValueError: if `output_dim != 1`, a Python-number or NumPy coverage
            is outside `(0, 1)`, or `coverage` has another shape.
    """
    _check_1d("prediction_interval", output_dim)
    params = check_params(params, output_dim, num_mixtures)
    coverage = levels("coverage", coverage, params)
    # A coverage outside (0, 1) gives NaN, also where both of its levels would be valid.
    valid = ops.logical_and(coverage > 0, coverage < 1)
    coverage = ops.where(valid, coverage, ops.full_like(coverage, math.nan))
    if len(coverage.shape) == 0:
        coverage = ops.reshape(coverage, [1] * (len(params.shape) - 1))
    # Both ends in one bisection, along a new leading axis of size 2.
    q = ops.stack([0.5 * (1.0 - coverage), 0.5 * (1.0 + coverage)], axis=0)
    ends = _bisect_quantile(params, q, num_mixtures, DEFAULT_QUANTILE_ITERATIONS)
    return ends[0], ends[1]
