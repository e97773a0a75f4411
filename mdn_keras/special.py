"""Special functions that `keras.ops` lacks, written in `keras.ops`.

The one place for them, each tested against SciPy over the range the
component families use (`tests/test_special.py`):

* `lgamma(x)`: `log Gamma(x)` for `x > 0`, by the Lanczos approximation.
* `log_gamma_half_ratio(a)`: `lgamma(a + 1/2) - lgamma(a)` without the
  cancellation of the two large terms (the Student-t normaliser).
"""

from __future__ import annotations

import math

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
#: Above this `a`, `log_gamma_half_ratio` uses its asymptotic series (error < 1e-13).
_HALF_RATIO_SERIES_FROM = 20.0


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

    For `a > 20` the asymptotic series
    `1/2 log a - 1/(8a) + 1/(192 a^3) + 1/(640 a^5) - 17/(14336 a^7)`
    (error below 1e-13): the direct difference of two `lgamma` values of size
    `a log a` would lose all float32 digits for large `a` (a Student-t with a
    large `df`). Below, the direct difference.
    """
    big = a > _HALF_RATIO_SERIES_FROM
    a_big = ops.where(big, a, _HALF_RATIO_SERIES_FROM + 1.0)
    a_small = ops.where(big, 1.0, a)
    inv = 1.0 / a_big
    inv2 = inv * inv
    series = 0.5 * ops.log(a_big) + inv * (
        -1.0 / 8.0 + inv2 * (1.0 / 192.0 + inv2 * (1.0 / 640.0 - inv2 * (17.0 / 14336.0)))
    )
    direct = lgamma(a_small + 0.5) - lgamma(a_small)
    return ops.where(big, series, direct)
