"""`"laplace"`: independent Laplace distributions per dimension.

Layout `[loc K*D | scale K*D | logits K]`; `scale` is the Laplace scale `b`
(the standard deviation is `sqrt(2) b`).

    log p(y; m, b) = -sum_d (log(2 b_d) + |y_d - m_d| / b_d)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from keras import ops

from mdn_keras.families.base import Family, Parts, ScaleFn, diag_mode_update
from mdn_keras.types import Tensor

_LOG_2 = math.log(2.0)


class Laplace(Family):
    """Independent Laplace components: parts `loc (..., K, D)`, `scale (..., K, D)`."""

    name = "laplace"
    part_names = ("loc", "scale")
    symmetric = True
    # exp(-745) / 2 underflows float64: the cdf is exactly 0 and 1 at the ends.
    quantile_bracket = 750.0

    def constrain(self, blocks: list, scale_fn: ScaleFn, output_dim: int) -> list:
        loc, scale = blocks
        return [loc, scale_fn(scale)]

    def log_prob(self, parts: Parts, y: Tensor) -> Tensor:
        loc, scale = parts
        return -ops.sum(ops.abs(y - loc) / scale + ops.log(scale) + _LOG_2, axis=-1)

    def log_prob_with_vjp(self, parts: Parts, y: Tensor) -> tuple[Tensor, Callable]:
        # d/d loc = sign(y - loc) / b, d/d b = (|y - loc| / b - 1) / b, d/d y = -d/d loc.
        # One division (1 / b), shared as in `Normal.log_prob_with_vjp`.
        loc, scale = parts
        diff = y - loc
        inv = ops.divide(1.0, scale)
        ratio = ops.abs(diff) * inv
        log_p = -ops.sum(ratio - ops.log(inv) + _LOG_2, axis=-1)

        def vjp(w: Tensor, with_target: bool = True) -> tuple[Tensor, Tensor, Optional[Tensor]]:
            w_inv = ops.expand_dims(w, -1) * inv
            d_loc = w_inv * ops.sign(diff)
            d_y = -ops.sum(d_loc, axis=-2, keepdims=True) if with_target else None
            return d_loc, w_inv * (ratio - 1.0), d_y

        return log_p, vjp

    def sample_from_noise(self, parts: Parts, sigma_scale: Tensor, uniform: Tensor) -> Tensor:
        loc, scale = parts
        d = loc.shape[-1]
        # The difference of two standard exponentials, -log(1 - u1) + log(1 - u2),
        # is a standard Laplace variable (exactly, with no sign branch).
        noise = ops.log(1.0 - uniform[..., d:]) - ops.log(1.0 - uniform[..., :d])
        return loc + scale * sigma_scale * noise

    def variance(self, parts: Parts) -> Tensor:
        return 2.0 * ops.square(parts[1])

    def cdf(self, parts: Parts, y: Tensor, portable: bool = False) -> Tensor:
        # Elementwise already: the same ops whether `portable` or not.
        loc, scale = parts
        z = (y - loc) / scale
        # 1/2 exp(z) below the location, 1 - 1/2 exp(-z) above: no cancellation in the left tail.
        tail = 0.5 * ops.exp(-ops.abs(z))
        return ops.where(z < 0, tail, 1.0 - tail)

    def crps_terms(self, parts: Parts, y: Tensor) -> tuple[Tensor, Tensor]:
        # E|X - y| = |d| + b exp(-|d| / b), d = y - m.
        loc, scale = parts
        dist = ops.abs(y - loc)
        to_y = dist + scale * ops.exp(-dist / scale)
        # X_i - X'_j = delta + a L - c L' with standard Laplace L, L' has the
        # characteristic function 1 / ((1 + a^2 t^2)(1 + c^2 t^2)), a signed
        # mixture of two Laplace laws, whence (u = |delta|)
        #     E|X_i - X'_j| = u + (a^3 e^{-u/a} - c^3 e^{-u/c}) / (a^2 - c^2).
        # With hi = max(a, c), lo = min(a, c) the difference quotient is
        #     hi^3 e^{-u/hi} expm1(x) / (lo - hi),
        #     x = 3 log1p((lo - hi) / hi) - u (hi - lo) / (lo hi)  <= 0,
        # accurate for close scales (no cancellation, nothing overflows); at
        # lo == hi it is the limit (3 hi^2 + u hi) e^{-u/hi}.
        u = ops.abs(ops.expand_dims(loc, -2) - ops.expand_dims(loc, -3))
        a, c = ops.expand_dims(scale, -2), ops.expand_dims(scale, -3)
        # (ops.where, not ops.maximum: Keras' torch maximum returns float32 for float64.)
        hi, lo = ops.where(a >= c, a, c), ops.where(a >= c, c, a)
        equal = lo == hi
        gap = ops.where(equal, 1.0, lo - hi)
        x = 3.0 * ops.log1p((lo - hi) / hi) - u * (hi - lo) / (lo * hi)
        decay = ops.exp(-u / hi)
        quotient = ops.where(
            equal, (3.0 * hi + u) * hi * decay, ops.square(hi) * hi * decay * ops.expm1(x) / gap
        )
        return to_y, u + quotient / (a + c)

    def mode_update(self, parts: Parts, resp: Tensor, x: Tensor) -> Tensor:
        # Iteratively reweighted least squares: near x, |y - m| / b is matched
        # by the quadratic with precision 1 / (b |x - m|) (floored, so a start
        # on a location stays there).
        loc, scale = parts
        dist = ops.maximum(ops.abs(x[..., None, :] - loc), 1e-6 * scale)
        return diag_mode_update(ops.divide(1.0, scale * dist), loc, resp)

    def tfp(self, tfd: Any, parts: Parts) -> Any:
        loc, scale = parts
        return tfd.Independent(tfd.Laplace(loc=loc, scale=scale), reinterpreted_batch_ndims=1)

    def torch(self, td: Any, parts: Parts) -> Any:
        loc, scale = parts
        return td.Independent(td.Laplace(loc, scale), 1)
