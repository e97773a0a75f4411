"""`"mvn_tril"`: full-covariance Gaussians `N(loc_k, L_k L_k^T)`.

Layout `[loc K*D | scale_tril K*D*(D+1)/2 | logits K]`. Each component's
lower triangle is stored row by row, `(0,0), (1,0), (1,1), (2,0), (2,1),
(2,2), ...`; the layer puts its scale activation (and `min_scale`) on the
diagonal, so it is positive, and leaves the off-diagonal entries free.

    log N(y; m, L L^T) = -D/2 log(2 pi) - sum_d log L_dd - 1/2 |z|^2,
    z = L^-1 (y - m)   (a triangular solve; no inverse, no determinant)

`D = 1` is the `"normal"` family. For `D = 2` with standard deviations
`(s_x, s_y)` and correlation `rho` (sketch-rnn's parameters):
`L = [[s_x, 0], [rho s_y, s_y sqrt(1 - rho^2)]]`.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
from keras import ops

from mdn_keras.families.base import Family, Parts, ScaleFn, gaussian_crps_terms, standard_normal
from mdn_keras.families.normal import gaussian_cdf
from mdn_keras.shapes import lead_shape, merge_last, split_last
from mdn_keras.types import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@cache
def tril_indices(output_dim: int) -> tuple:
    """Row-major `(rows, cols)` of the lower triangle, in the flat order."""
    rows, cols = np.tril_indices(output_dim)
    return tuple(int(r) for r in rows), tuple(int(c) for c in cols)


@cache
def _diag_mask(output_dim: int) -> tuple:
    """`True` at the flat positions of the diagonal entries."""
    rows, cols = tril_indices(output_dim)
    return tuple(r == c for r, c in zip(rows, cols, strict=True))


class MultivariateNormalTriL(Family):
    """Full-covariance Gaussian components: `loc (..., K, D)`, `scale_tril (..., K, D, D)`."""

    name = "mvn_tril"
    part_names = ("loc", "scale_tril")
    symmetric = True

    def part_sizes(self, output_dim: int) -> tuple[int, ...]:
        return (output_dim, output_dim * (output_dim + 1) // 2)

    def part_event_ndims(self) -> tuple[int, ...]:
        return (1, 2)

    def layout_formula(self) -> str:
        return "num_mixtures * (output_dim + output_dim * (output_dim + 1) / 2 + 1)"

    def unflatten(self, blocks: list, output_dim: int, num_mixtures: int) -> Parts:
        loc_block, tril_block = blocks
        d = output_dim
        lead = lead_shape(tril_block, 1)
        loc = ops.reshape(loc_block, (*lead, num_mixtures, d))
        tril = ops.reshape(tril_block, (*lead, num_mixtures, d * (d + 1) // 2))
        # Rows 1, 2, ..., D long: one split, each row padded with zeros to D,
        # stacked. Cheap gradients (a concatenate, slices, an unstack), unlike a
        # gather's scatter-add.
        rows = split_last(tril, list(range(1, d + 1)))
        padding = [[0, 0]] * (len(tril.shape) - 1)
        dense_rows = [ops.pad(row, [*padding, [0, d - 1 - i]]) for i, row in enumerate(rows)]
        return loc, ops.stack(dense_rows, axis=-2)

    def flatten(self, parts: Parts, output_dim: int) -> list:
        loc, scale_tril = parts
        d = output_dim
        rows, cols = tril_indices(d)
        flat_index = np.asarray([r * d + c for r, c in zip(rows, cols, strict=True)], dtype="int32")
        lead = lead_shape(scale_tril, 3)
        dense = ops.reshape(scale_tril, (*lead, scale_tril.shape[-3], d * d))
        tril = ops.take(dense, ops.convert_to_tensor(flat_index), axis=-1)
        return [merge_last(loc, 2), merge_last(tril, 2)]

    def constrain(self, blocks: list, scale_fn: ScaleFn, output_dim: int) -> list:
        loc, tril = blocks
        num_mixtures = tril.shape[-1] // (output_dim * (output_dim + 1) // 2)
        mask = np.tile(np.asarray(_diag_mask(output_dim)), num_mixtures)
        return [loc, ops.where(ops.convert_to_tensor(mask), scale_fn(tril), tril)]

    def log_prob(self, parts: Parts, y: Tensor) -> Tensor:
        loc, scale_tril = parts
        diff = y - loc  # (..., K, D)
        z = self._solve(scale_tril, diff)
        log_det = ops.sum(ops.log(ops.diagonal(scale_tril, axis1=-2, axis2=-1)), axis=-1)
        return -0.5 * ops.sum(ops.square(z), axis=-1) - log_det - loc.shape[-1] * _HALF_LOG_2PI

    @staticmethod
    def _solve(scale_tril: Tensor, rhs: Tensor) -> Tensor:
        """`L^-1 rhs` for `(..., D, D)` L and `(..., D)` rhs, broadcasting their batch axes."""
        if tuple(scale_tril.shape[:-2]) != tuple(rhs.shape[:-1]):
            # Broadcast by adding zeros (works with unknown static axes too).
            scale_tril = scale_tril + ops.zeros_like(rhs)[..., None, :]
            rhs = rhs + ops.zeros_like(scale_tril[..., 0])
        return ops.solve_triangular(scale_tril, rhs[..., None], lower=True)[..., 0]

    def sample_from_noise(self, parts: Parts, sigma_scale: Tensor, uniform: Tensor) -> Tensor:
        loc, scale_tril = parts
        d = loc.shape[-1]
        noise = standard_normal(uniform[..., :d], uniform[..., d:])
        return loc + sigma_scale * ops.sum(scale_tril * noise[..., None, :], axis=-1)

    def variance(self, parts: Parts) -> Tensor:
        return ops.sum(ops.square(parts[1]), axis=-1)

    def covariance(self, parts: Parts) -> Tensor:
        scale_tril = parts[1]
        return ops.matmul(scale_tril, ops.swapaxes(scale_tril, -1, -2))

    def spread(self, parts: Parts) -> Tensor:
        return ops.sqrt(self.variance(parts))

    def cdf(self, parts: Parts, y: Tensor, portable: bool = False) -> Tensor:
        return gaussian_cdf(parts[0], self.spread(parts), y, portable)

    def crps_terms(self, parts: Parts, y: Tensor) -> tuple[Tensor, Tensor]:
        # The marginals of N(loc, L L^T) are N(loc_d, (L L^T)_dd).
        return gaussian_crps_terms(parts[0], self.spread(parts), y)

    def mode_update(self, parts: Parts, resp: Tensor, x: Tensor) -> Tensor:
        # x = (sum_k r_k P_k)^-1 sum_k r_k P_k m_k with P_k = (L_k L_k^T)^-1.
        loc, scale_tril = parts  # (..., 1, K, D), (..., 1, K, D, D)
        d = loc.shape[-1]
        eye = ops.eye(d, dtype=loc.dtype)
        l_inv = ops.solve_triangular(scale_tril, eye + ops.zeros_like(scale_tril), lower=True)
        # P = L^-T L^-1 and P m as broadcast sums, not `ops.matmul` (which
        # Keras' PyTorch backend computes in float32 for float64 inputs).
        precision = ops.sum(l_inv[..., :, :, None] * l_inv[..., :, None, :], axis=-3)
        weighted = resp[..., None, None] * precision  # (..., S, K, D, D)
        lhs = ops.sum(weighted, axis=-3)
        rhs = ops.sum(ops.sum(weighted * loc[..., None, :], axis=-1), axis=-2)
        return ops.solve(lhs, rhs[..., None])[..., 0]

    def tfp(self, tfd: Any, parts: Parts) -> Any:
        loc, scale_tril = parts
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril)

    def torch(self, td: Any, parts: Parts) -> Any:
        loc, scale_tril = parts
        return td.MultivariateNormal(loc, scale_tril=scale_tril)
