"""Special functions that `keras.ops` lacks, written in `keras.ops`.

The one place for them, each tested against SciPy over the range the
component families use (`tests/test_special.py`):

* `lgamma(x)`: `log Gamma(x)` for `x > 0`, by the Lanczos approximation.
* `log_gamma_half_ratio(a)`: `lgamma(a + 1/2) - lgamma(a)` without the
  cancellation of the two large terms (the Student-t normaliser).
* `erfc_elementwise(x)`: `erfc` from elementwise ops only, for export.
* `student_t_cdf(t, df)`: the Student-t cdf, through the continued fraction
  of the regularised incomplete beta function.
"""

from __future__ import annotations

import math
from typing import Callable

import keras
from keras import ops

from mdn_keras.types import Tensor

# Lanczos approximation, g = 7, n = 9 (the coefficients of Numerical Recipes /
# Boost's "lanczos_9"): relative error below 1e-15 for x >= 0.5 in float64.
_LANCZOS_G = 7.0
_LANCZOS_COEF = (
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
#: Above this `a`, `log_gamma_half_ratio` uses its asymptotic series (error < 1e-10).
_HALF_RATIO_SERIES_FROM = 5.0


def lgamma(x: Tensor) -> Tensor:
    """`log Gamma(x)` for `x > 0`, elementwise, in `x.dtype`.

    Computed as `lgamma(x + 1) - log(x)` with the Lanczos approximation of
    `lgamma(x + 1)` (its argument is then >= 1, where it is accurate to
    ~1e-15 relative in float64; float32 keeps its own rounding). `x <= 0`
    gives NaN or inf; the families never pass such values.
    """
    z = x  # lgamma(x + 1) via Lanczos uses z = (x + 1) - 1 = x.
    series = _LANCZOS_COEF[0] + sum(
        c / (z + float(i)) for i, c in enumerate(_LANCZOS_COEF[1:], start=1)
    )
    t = z + (_LANCZOS_G + 0.5)
    lgamma_x_plus_1 = _HALF_LOG_2PI + (z + 0.5) * ops.log(t) - t + ops.log(series)
    return lgamma_x_plus_1 - ops.log(x)


def log_gamma_half_ratio(a: Tensor) -> Tensor:
    """`lgamma(a + 1/2) - lgamma(a)` for `a > 0`, without cancellation.

    For `a > 5` the asymptotic series
    `1/2 log a - 1/(8a) + 1/(192 a^3) - 1/(640 a^5) + 17/(14336 a^7) - 31/(18432 a^9)`
    (error below 1e-10, checked with 40-digit arithmetic): the direct
    difference of two `lgamma` values of size `a log a` would lose all float32
    digits for large `a` (a Student-t with a large `df`). Below, the direct
    difference of values under 3.3 in magnitude.
    """
    big = a > _HALF_RATIO_SERIES_FROM
    a_big = ops.where(big, a, _HALF_RATIO_SERIES_FROM + 1.0)
    a_small = ops.where(big, 1.0, a)
    inv = ops.divide(1.0, a_big)
    inv2 = inv * inv
    series = 0.5 * ops.log(a_big) + inv * (
        -1.0 / 8.0
        + inv2
        * (1.0 / 192.0 + inv2 * (-1.0 / 640.0 + inv2 * (17.0 / 14336.0 - inv2 * (31.0 / 18432.0))))
    )
    direct = lgamma(a_small + 0.5) - lgamma(a_small)
    return ops.where(big, series, direct)


#: Continued-fraction steps of `student_t_cdf`. With `b = 1/2` the fraction
#: converges in under 20 steps for every `df` (checked against SciPy for df
#: from 0.3 to 1e6 and |t| up to 1e4); 40 leave a margin.
STUDENT_T_CDF_TERMS = 40
#: Above these `df` (per dtype), `student_t_cdf` uses Wallace's normal
#: transform, whose error (2.4e-7 at df = 300, 2e-10 at df = 1e4, falling as
#: 1/df^2) is then below what the continued fraction keeps in that dtype.
_WALLACE_FROM = {"float16": 30.0, "bfloat16": 30.0, "float32": 300.0, "float64": 1e4}


def student_t_cdf(t: Tensor, df: Tensor) -> Tensor:
    """The cdf of the standard Student-t distribution with `df > 0` degrees of freedom.

    `F(t) = 1 - I_x(df/2, 1/2) / 2` for `t > 0` (and `I_x / 2` for `t <= 0`),
    `x = df / (df + t^2)`, with the regularised incomplete beta function
    `I_x(a, b)` evaluated by its continued fraction (modified Lentz), on
    `I_x(a, 1/2)` or on `1 - I_{1-x}(1/2, a)`, whichever converges. `x` and
    `1 - x = t^2 / (df + t^2)` are both formed without cancellation, and the
    beta function's normaliser uses `log_gamma_half_ratio`. For large `df`
    (above 300 in float32, 1e4 in float64) the fraction loses digits to
    cancellation, and Wallace's (1959) transform is used instead:
    `F(t) = Phi(sign(t) sqrt((df - 1/2) log(1 + t^2 / df)))`, whose error
    falls as `1/df^2` (2.4e-7 at df = 300). Absolute error below 2e-6 in
    float32 and 1e-8 in float64 (tested against SciPy for df in [0.3, 1e6]).

    Args:
        t: standardised values `(y - loc) / scale`.
        df: degrees of freedom, broadcasting with `t`.

    Returns:
        `F(t)`, in `[0, 1]`, of the broadcast shape.
    """
    t = ops.convert_to_tensor(t)
    df = ops.cast(ops.convert_to_tensor(df), t.dtype)
    t2 = ops.square(t)
    denom = df + t2
    x = df / denom  # I_x(df/2, 1/2) is the two-sided tail mass P(|T| > |t|).
    one_minus_x = t2 / denom
    a = 0.5 * df
    # Continued fraction on (a, 1/2, x) where x < (a + 1) / (a + 1.5), else on
    # (1/2, a, 1 - x) and take the complement.
    swap = x >= (a + 1.0) / (a + 1.5)
    p = ops.where(swap, 0.5, a)
    q = ops.where(swap, a, 0.5)
    z = ops.where(swap, one_minus_x, x)
    log_x = -ops.log1p(t2 / df)
    log_z = ops.where(swap, ops.log(one_minus_x), log_x)
    log_1mz = ops.where(swap, log_x, ops.log(one_minus_x))
    # log B(a, 1/2) = lgamma(a) + lgamma(1/2) - lgamma(a + 1/2).
    log_beta = 0.5 * math.log(math.pi) - log_gamma_half_ratio(a)
    log_front = p * log_z + q * log_1mz - log_beta - ops.log(p)
    incomplete = ops.exp(log_front) * _beta_continued_fraction(p, q, z)
    tail = ops.where(swap, 1.0 - incomplete, incomplete)  # I_x(df/2, 1/2)
    by_fraction = ops.where(t > 0, 1.0 - 0.5 * tail, 0.5 * tail)
    wallace_z = ops.sign(t) * ops.sqrt((df - 0.5) * (-log_x))
    by_wallace = 0.5 * ops.erfc(-wallace_z / math.sqrt(2.0))
    threshold = _WALLACE_FROM.get(keras.backend.standardize_dtype(t.dtype), 300.0)
    return ops.where(df > threshold, by_wallace, by_fraction)


def _beta_continued_fraction(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """The continued fraction of `I_x(a, b)` (modified Lentz), without its prefactor."""
    tiny = 1e-30
    qab, qap, qam = a + b, a + 1.0, a - 1.0

    def guard(v: Tensor) -> Tensor:
        return ops.where(ops.abs(v) < tiny, tiny, v)

    d = 1.0 / guard(1.0 - qab * x / qap)
    c = ops.ones_like(x)
    h = d

    def body(m: Tensor, carry: tuple) -> tuple:
        c, d, h = carry
        m = ops.cast(m, x.dtype) + 1.0
        m2 = 2.0 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 / guard(1.0 + aa * d)
            c = guard(1.0 + aa / c)
            h = h * d * c
        return c, d, h

    _, _, h = repeat(STUDENT_T_CDF_TERMS, body, (c, d, h))
    return h


def repeat(n: int, body: Callable[[Tensor, tuple], tuple], init: tuple) -> tuple:
    """`ops.fori_loop(0, n, body, init)`, reverse-differentiable on every backend.

    Keras' TensorFlow `fori_loop` is a `tf.while_loop` without
    `maximum_iterations`, whose gradient XLA cannot compile (the derivative
    of a quantile differentiates the Student-t cdf in a compiled function);
    on JAX `fori_loop` with a static count is a differentiable scan.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.fori_loop(0, n, body, init)
    out = ops.while_loop(
        lambda i, *carry: i < n,
        lambda i, *carry: (i + 1, *body(i, carry)),
        (ops.convert_to_tensor(0, "int32"), *init),
        maximum_iterations=n,
    )
    return tuple(out[1:])


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


def erfc_elementwise(x: Tensor) -> Tensor:
    """`erfc(x)` from `exp` and arithmetic only, relative error below `1.2e-7`.

    Numerical Recipes' `erfcc` (a rational-exponential fit), accurate to
    float32's own precision over the whole line, tails included. It lowers to
    the elementwise builtin ops of every export format (TFLite has no builtin
    `Erfc`); `keras.ops.erfc` is exact to the dtype and is used elsewhere.
    """
    z = ops.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = _ERFC_COEF[-1]
    for c in reversed(_ERFC_COEF[:-1]):
        poly = c + t * poly
    tail = t * ops.exp(-z * z + poly)
    return ops.where(x >= 0, tail, 2.0 - tail)


def softplus(x: Tensor) -> Tensor:
    """`log(1 + exp(x))`, overflow-free, with derivative `sigmoid(x)` everywhere.

    `ops.softplus` on TensorFlow and PyTorch (one fused kernel each). On JAX,
    `max(x, 0) + log1p(exp(min(x, 0) - max(x, 0)))` in elementwise ops: the
    same values as `jax.nn.softplus` (`logaddexp(x, 0)`), but XLA fuses it
    with its neighbours instead of evaluating the guarded `logaddexp` and its
    custom derivative (about a quarter less time forward and backward).
    `min(x, 0) - max(x, 0)` is `-|x|`, written so that JAX's rule for ties of
    `max` and `min` (half the derivative to each side) gives `1/2` at `x = 0`,
    where `abs` would give 0; `x = inf` gives `inf`, not `inf - inf`.
    """
    if keras.backend.backend() != "jax":
        return ops.softplus(x)
    m = ops.maximum(x, 0.0)
    return m + ops.log1p(ops.exp(ops.minimum(x, 0.0) - m))
