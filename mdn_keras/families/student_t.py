"""`"student_t"`: independent Student-t distributions per dimension, `df` learned.

Layout `[loc K*D | scale K*D | df K*D | logits K]`. With `z = (y - m) / s`:

    log t(y; df, m, s) = lgamma((df + 1) / 2) - lgamma(df / 2) - 1/2 log(df pi)
                         - log s - (df + 1) / 2 log(1 + z^2 / df)

summed over dimensions. The layer constrains `df = softplus(raw) + min_df`
(`min_df = 1` by default, so `df >= 1`; the mean exists where `df > 1`, the
variance where `df > 2`). Statistics that do not exist are returned as TFP returns
them: the mean is NaN where `df <= 1`, the variance is inf where
`1 < df <= 2` and NaN where `df <= 1`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np
from keras import ops

from mdn_keras.families.base import Family, Parts, ScaleFn, diag_mode_update
from mdn_keras.special import log_gamma_half_ratio, softplus, student_t_cdf
from mdn_keras.types import Tensor

_HALF_LOG_PI = 0.5 * math.log(math.pi)


class StudentT(Family):
    """Independent Student-t components: parts `loc`, `scale`, `df`, each `(..., K, D)`.

    Args:
        min_df: floor of the degrees of freedom the `MDN` layer produces,
            `df = softplus(raw) + min_df`; a finite number > 0. With the
            default 1, `df > 1` (a finite mean) wherever `softplus(raw)` does
            not round to zero (in float32, `raw > -17` or so; below, `df` is
            exactly 1 and the mean is NaN, as TFP gives it). Pass a floor
            above 1 (above 2) to guarantee a finite mean (variance).
    """

    name = "student_t"
    part_names = ("loc", "scale", "df")
    symmetric = True

    def __init__(self, min_df: float = 1.0) -> None:
        if (
            isinstance(min_df, (bool, np.bool_))
            or not isinstance(min_df, numbers.Real)
            or not (math.isfinite(float(min_df)) and float(min_df) > 0)
        ):
            raise ValueError(
                f"Expected `min_df` to be a finite number > 0. Received: min_df={min_df!r}"
            )
        self.min_df: float = float(min_df)

    def layout_formula(self) -> str:
        return "num_mixtures * (3 * output_dim + 1)"

    def constrain(self, blocks: list, scale_fn: ScaleFn, output_dim: int) -> list:
        loc, scale, df = blocks
        return [loc, scale_fn(scale), softplus(df) + self.min_df]

    def log_prob(self, parts: Parts, y: Tensor) -> Tensor:
        return self.log_prob_fn(parts)(y)

    def log_prob_fn(self, parts: Parts) -> Callable[[Tensor], Tensor]:
        loc, scale, df = parts
        half_df = 0.5 * df
        log_norm = log_gamma_half_ratio(half_df) - 0.5 * ops.log(df) - _HALF_LOG_PI
        log_norm = log_norm - ops.log(scale)
        power = half_df + 0.5

        def log_prob(y: Tensor) -> Tensor:
            z = (y - loc) / scale
            return ops.sum(log_norm - power * ops.log1p(ops.square(z) / df), axis=-1)

        return log_prob

    def sample_from_noise(self, parts: Parts, sigma_scale: Tensor, uniform: Tensor) -> Tensor:
        loc, scale, df = parts
        d = loc.shape[-1]
        # Bailey's polar method without its rejection step: for (U, V) uniform
        # on the unit disc, W = U^2 + V^2 is Uniform(0, 1] and the angle is
        # uniform, and t = cos(angle) sqrt(df (W^(-2/df) - 1)) is t_df exactly.
        w = 1.0 - uniform[..., d:]
        angle = (2.0 * math.pi) * uniform[..., :d]
        radius = ops.sqrt(df * (ops.exp((-2.0 / df) * ops.log(w)) - 1.0))
        return loc + scale * sigma_scale * ops.cos(angle) * radius

    def mean(self, parts: Parts) -> Tensor:
        loc, _, df = parts
        return ops.where(df > 1.0, loc, math.nan)

    def variance(self, parts: Parts) -> Tensor:
        _, scale, df = parts
        finite = ops.square(scale) * df / ops.where(df > 2.0, df - 2.0, 1.0)
        return ops.where(df > 2.0, finite, ops.where(df > 1.0, math.inf, math.nan))

    def cdf(self, parts: Parts, y: Tensor, portable: bool = False) -> Tensor:
        if portable:
            raise ValueError(
                "The 'student_t' family has no cdf from elementwise ops only (it needs "
                "the incomplete beta function's loop); use `mdn_keras.mixture_cdf` "
                "(keras.ops) or `to_tfp(params, ...).cdf`. Received: component='student_t'"
            )
        loc, scale, df = parts
        return student_t_cdf((y - loc) / scale, df)

    def quantile_halfwidth(self, parts: Parts, tail: Tensor) -> Tensor:
        # P(T > x) <= c df^((df+1)/2) x^-df / df for the standard t (bound the
        # density by c (x^2/df)^(-(df+1)/2)), c = Gamma((df+1)/2) / (sqrt(df pi) Gamma(df/2)):
        # x = (c df^((df-1)/2) / tail)^(1/df) puts at most `tail` beyond.
        _, scale, df = parts
        log_c = log_gamma_half_ratio(0.5 * df) - 0.5 * ops.log(df) - _HALF_LOG_PI
        log_x = (log_c + 0.5 * (df - 1.0) * ops.log(df) - ops.log(tail)) / df
        # Capped at e^60 (far beyond any float32 quantile of df >= 1/2 at tail >= 1e-45).
        return scale * ops.maximum(ops.exp(ops.minimum(log_x, 60.0)), self.quantile_bracket)

    def mode_update(self, parts: Parts, resp: Tensor, x: Tensor) -> Tensor:
        # The stationarity condition of log t in y is that of a Gaussian with
        # precision (df + 1) / (df s^2 + (y - m)^2) (the EM weight of a t).
        loc, scale, df = parts
        diff2 = ops.square(x[..., None, :] - loc)
        return diag_mode_update((df + 1.0) / (df * ops.square(scale) + diff2), loc, resp)

    def tfp(self, tfd: Any, parts: Parts) -> Any:
        loc, scale, df = parts
        return tfd.Independent(
            tfd.StudentT(df=df, loc=loc, scale=scale), reinterpreted_batch_ndims=1
        )

    def torch(self, td: Any, parts: Parts) -> Any:
        loc, scale, df = parts
        return td.Independent(td.StudentT(df, loc, scale), 1)

    def get_config(self) -> dict:
        return {"min_df": self.min_df}
