"""The interface every component family implements.

A mixture density network predicts `p(y|x) = sum_k pi_k(x) p(y | theta_k(x))`.
The mixture part (mixing logits, log-softmax + log-sum-exp, the choice of a
component with a temperature, the law of total variance, the loops of the
statistics) lives in `mdn_keras.density`, `mdn_keras.sampling` and
`mdn_keras.statistics` and is written once. What differs between component
families lives in one small subclass of `Family` per family:

* its parameter *parts* (`loc`, `scale`, `df`, `scale_tril`, ...), their
  sizes per component and their flat layout (`part_sizes`, `unflatten`,
  `flatten`);
* the constraints the `MDN` layer applies to its raw outputs (`constrain`);
* the component log-density (`log_prob`), one draw from a component
  (`sample`), its moments (`mean`, `variance`, `covariance`), its marginal
  cdf (`cdf`), a spread for brackets and tolerances (`spread`), the update of
  the mode's fixed-point iteration (`mode_update`), and optionally forms of
  `log_prob` and `mode_update` that compute the parameters' own terms once
  for many evaluations (`log_prob_fn`, `mode_update_fn`);
* its TensorFlow Probability and `torch.distributions` twins (`tfp`, `torch`).

Shapes: `K` components, `D` output dimensions. A family's parts have shape
`(..., K, *part_shape)`, e.g. `(..., K, D)` for a diagonal scale and
`(..., K, D, D)` for a lower-triangular one.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, ClassVar, Optional

import keras
from keras import ops

from mdn_keras.shapes import lead_shape, merge_last, reshape, shape_str
from mdn_keras.types import Seed, Tensor

#: Maps raw values to positive scales: the `MDN` layer's scale activation.
ScaleFn = Callable[[Tensor], Tensor]
Parts = tuple  # of tensors, in the order of `Family.part_names`


class Family:
    """A component family of a mixture density network (see the module docstring).

    Subclasses set `name` and `part_names` and implement the methods that
    raise `NotImplementedError` here. Instances are small, immutable and
    compare equal when their type and `get_config` are equal, so every
    option that changes a result must be in `get_config`: equal families
    share compiled programs (`mdn_keras._compile`) and serialised forms. A
    subclass that changes the component density must set `symmetric` for
    itself rather than inherit it, and one that overrides `log_prob` or
    `mode_update` overrides `log_prob_fn` or `mode_update_fn` too (or sets
    them back to `Family`'s, which call the plain methods): `mixture_mode`
    uses those forms.
    """

    #: Registry name, as passed in `component="..."`.
    name: ClassVar[str] = ""
    #: Names of the parameter parts, in layout order (the logits come last).
    part_names: ClassVar[tuple[str, ...]] = ()
    #: Half-width, in `spread`s, of the bracket where each component's cdf is
    #: 0 and 1 to float64 precision (`mixture_quantile` bisects it).
    quantile_bracket: ClassVar[float] = 40.0
    #: Whether each component is symmetric about its location `parts[0]`, so
    #: that `-Y` is the same family with `parts[0]` negated. Quantiles above
    #: the median are then found on `-Y`'s lower tail, as accurately as those
    #: below it (a cdf near 1 has only float spacing `6e-8` in float32).
    symmetric: ClassVar[bool] = False

    # --- layout -----------------------------------------------------------

    def part_sizes(self, output_dim: int) -> tuple[int, ...]:
        """Flat values per component of each part, in layout order."""
        return tuple(output_dim for _ in self.part_names)

    def part_event_ndims(self) -> tuple[int, ...]:
        """Rank of each part per component: 1 for `(D,)`, 2 for `(D, D)`."""
        return tuple(1 for _ in self.part_names)

    def params_size(self, output_dim: int, num_mixtures: int) -> int:
        """Length of the flat parameter vector: `K * (sum(part_sizes) + 1)`."""
        return num_mixtures * (sum(self.part_sizes(output_dim)) + 1)

    def layout_formula(self) -> str:
        """The `params_size` formula in words, for error messages."""
        return "num_mixtures * (2 * output_dim + 1)"

    def unflatten(self, blocks: list, output_dim: int, num_mixtures: int) -> Parts:
        """Flat blocks `(..., K * part_size)` -> parts `(..., K, *part_shape)`."""
        return tuple(
            reshape(block, (*lead_shape(block, 1), num_mixtures, output_dim)) for block in blocks
        )

    def flatten(self, parts: Parts, output_dim: int) -> list:
        """Parts `(..., K, *part_shape)` -> flat blocks `(..., K * part_size)`."""
        return [merge_last(p, 1 + nd) for p, nd in zip(parts, self.part_event_ndims(), strict=True)]

    def check_parts(self, parts: Parts, output_dim: int) -> None:
        """Raises `ValueError` unless each part has its per-component shape."""
        for name, part, ndims in zip(self.part_names, parts, self.part_event_ndims(), strict=True):
            want = (output_dim,) * ndims
            shape = tuple(part.shape)
            if len(shape) < ndims + 1 or shape[-ndims:] != want:
                raise ValueError(
                    f"Expected `{name}` of shape (..., K, "
                    + ", ".join(["D"] * ndims)
                    + f") with D = {output_dim} for the {self.name!r} family. "
                    f"Received: {name}.shape={shape_str(shape)}"
                )

    # --- the layer's constraints -------------------------------------------

    def constrain(self, blocks: list, scale_fn: ScaleFn, output_dim: int) -> list:
        """Raw blocks from the layer's projection -> valid parameter blocks."""
        raise NotImplementedError

    # --- the component maths -----------------------------------------------

    def log_prob(self, parts: Parts, y: Tensor) -> Tensor:
        """`(..., K)` log-density of `y` of shape `(..., 1, D)` under each component."""
        raise NotImplementedError

    def log_prob_fn(self, parts: Parts) -> Callable[[Tensor], Tensor]:
        """`y -> log_prob(parts, y)`, for evaluating many `y` against the same parts.

        `mixture_mode` evaluates the density at every step of its iteration;
        a family overrides this to compute the terms that depend on the
        parameters alone (normalisers, reciprocal scales) once, outside the
        loop (eager PyTorch has no compiler to hoist them). The values are
        `log_prob`'s up to rounding.
        """
        return functools.partial(self.log_prob, parts)

    def log_prob_with_vjp(self, parts: Parts, y: Tensor) -> Optional[tuple[Tensor, Callable]]:
        """`(log_prob(parts, y), vjp)` with a hand-written derivative, or None.

        `vjp(w, with_target=True)` maps `w`, the derivative of a scalar loss
        with respect to the `(..., K)` log-densities, to the derivatives with
        respect to each part and to `y`, in their shapes; with
        `with_target=False` the last is None (not computed). A family that gives one has its loss
        (`mdn_nll`) differentiated analytically where that is faster (see
        `mdn_keras.loss.ANALYTIC_GRADIENT_BACKENDS`); the others, and every
        other function, are differentiated by the backend. None by default.
        """
        return None

    def sample(self, parts: Parts, sigma_scale: Tensor, seed: Seed) -> Tensor:
        """One draw `(..., D)` from a single component with parts `(..., *part_shape)`.

        `sigma_scale` (broadcasting with `(..., 1)`) multiplies the spread, so
        the covariance is multiplied by `sigma_scale**2`; 0 gives the location.
        Draws `noise_size(D)` uniform numbers and calls `sample_from_noise`.
        """
        from mdn_keras.sampling import random_uniform

        loc = parts[0]
        shape = (*ops.shape(loc)[:-1], self.noise_size(loc.shape[-1]))
        return self.sample_from_noise(parts, sigma_scale, random_uniform(shape, loc.dtype, seed))

    def noise_size(self, output_dim: int) -> int:
        """Uniform numbers one draw from a component consumes in `sample_from_noise`."""
        return 2 * output_dim

    def sample_from_noise(self, parts: Parts, sigma_scale: Tensor, uniform: Tensor) -> Tensor:
        """One draw `(..., D)` from a single component, a deterministic function of noise.

        `uniform` `(..., noise_size(D))` holds independent `Uniform[0, 1)`
        numbers (broadcasting with the parts' leading axes); the result has
        the component's law exactly (up to floating-point rounding), with
        `sigma_scale` as in `sample`. Only elementwise maths, no random ops,
        so the draw exports to runtimes without random kernels.
        """
        raise NotImplementedError

    def mean(self, parts: Parts) -> Tensor:
        """`(..., K, D)` component means (NaN where undefined, as TFP)."""
        return parts[0]

    def variance(self, parts: Parts) -> Tensor:
        """`(..., K, D)` per-dimension component variances (inf/NaN where TFP gives them)."""
        raise NotImplementedError

    def covariance(self, parts: Parts) -> Tensor:
        """`(..., K, D, D)` component covariances; diagonal unless overridden."""
        var = self.variance(parts)
        eye = ops.eye(var.shape[-1], dtype=var.dtype)
        return ops.expand_dims(var, -1) * eye

    def spread(self, parts: Parts) -> Tensor:
        """`(..., K, D)` a positive per-dimension width of each component (its scale)."""
        return parts[1]

    def cdf(self, parts: Parts, y: Tensor, portable: bool = False) -> Tensor:
        """`(..., K, D)` each component's marginal cdf per dimension at `y` `(..., 1, D)`.

        `portable=True` asks for elementwise builtin ops only (no `Erfc`, no
        loop), for export to TFLite and ONNX; a family that cannot raises a
        `ValueError`.
        """
        raise NotImplementedError(
            f"The {self.name!r} family has no cdf in keras.ops; use "
            "`mdn_keras.to_tfp(params, ...).cdf(y)` (TensorFlow Probability) instead."
        )

    def crps_terms(self, parts: Parts, y: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """Closed-form ingredients of the CRPS of a mixture of this family, or None.

        The CRPS of a mixture `F = sum_k w_k F_k` at `y` is, per dimension,

            CRPS(F, y) = sum_i w_i E|X_i - y| - 1/2 sum_ij w_i w_j E|X_i - X'_j|

        with `X_i ~ F_i` and `X'_j ~ F_j` independent. A family with closed
        forms returns `(E|X_k - y|, E|X_i - X'_j|)` of shapes `(..., K, D)`
        and `(..., K, K, D)` for `y` of shape `(..., 1, D)`; the default
        returns None and `mdn_keras.scores.crps` then integrates
        `(F(z) - 1{z >= y})^2` numerically with the family's `cdf`.
        """
        return None

    def quantile_halfwidth(self, parts: Parts, tail: Tensor) -> Tensor:
        """`(..., K, D)` half-width around `loc` outside which each component
        has at most `tail` probability on either side (`tail` broadcasting with
        `(..., 1, 1)`); by default `quantile_bracket` spreads, where the cdf of
        light-tailed families is 0 and 1 in float64."""
        return self.quantile_bracket * self.spread(parts)

    def mode_update(self, parts: Parts, resp: Tensor, x: Tensor) -> Tensor:
        """One fixed-point step of the mixture mode.

        Args:
            parts: the parts with an extra start axis, `(..., 1, K, *part_shape)`.
            resp: `(..., S, K)` posterior responsibilities of the components at `x`.
            x: `(..., S, D)` current points, one per start.

        Returns:
            `(..., S, D)`: the point where the responsibility-weighted
            quadratic model of `log p` around `x` is stationary.
        """
        raise NotImplementedError

    def mode_update_fn(self, parts: Parts) -> Callable[[Tensor, Tensor], Tensor]:
        """`(resp, x) -> mode_update(parts, resp, x)` for many steps with the same
        parts: as `log_prob_fn`, a family whose update has terms that depend on
        the parameters alone overrides it to compute them once."""
        return functools.partial(self.mode_update, parts)

    # --- twins --------------------------------------------------------------

    def tfp(self, tfd: Any, parts: Parts) -> Any:
        """The component distribution in TFP, batch `(..., K)`, event `(D,)`."""
        raise NotImplementedError

    def torch(self, td: Any, parts: Parts) -> Any:
        """The component distribution in `torch.distributions`, batch `(..., K)`, event `(D,)`."""
        raise NotImplementedError

    # --- serialisation ------------------------------------------------------

    def get_config(self) -> dict:
        """Options of this family (none by default)."""
        return {}

    def serialize(self) -> Any:
        """The name alone when the options are the defaults, else `{"name", **options}`."""
        config = self.get_config()
        if config == type(self)().get_config():
            return self.name
        return {"name": self.name, **config}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({options})"


def standard_normal(u1: Tensor, u2: Tensor) -> Tensor:
    """Standard normal numbers from two equal-shape `Uniform[0, 1)` tensors (Box-Muller).

    `sqrt(-2 log(1 - u1)) cos(2 pi u2)`: `1 - u1` lies in `(0, 1]`, so the
    log is finite.
    """
    return ops.sqrt(-2.0 * ops.log(1.0 - u1)) * ops.cos((2.0 * math.pi) * u2)


def diag_mode_update(precision: Tensor, loc: Tensor, resp: Tensor) -> Tensor:
    """`sum_k r_k P_k loc_k / sum_k r_k P_k` for diagonal precisions `P` `(..., S, K, D)`.

    `diag_mode_update_fn(precision, loc)(resp)`.
    """
    return diag_mode_update_fn(precision, loc)(resp)


def diag_mode_update_fn(precision: Tensor, loc: Tensor) -> Callable[[Tensor], Tensor]:
    """`resp -> sum_k r_k P_k loc_k / sum_k r_k P_k`, `(..., S, K)` -> `(..., S, D)`,
    for diagonal precisions `P` and locations `(..., S, K, D)` (axis -3 may be
    1); what depends on `P` and `loc` alone is computed once.

    On JAX and PyTorch the sums over `k` are contractions (`einsum`, about
    half the time of a broadcast product and a sum there); TensorFlow's
    broadcast product and sum is the faster of the two on its side. On
    PyTorch a precision shared by the starts (axis -3 of size 1, `normal`)
    is one batched matrix product with both sums (a tenth off the eager `mixture_mode`;
    XLA's CPU batched products of these small matrices are 3-6x slower).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":

        def broadcast_update(resp: Tensor) -> Tensor:
            weight = ops.expand_dims(resp, -1) * precision
            return ops.sum(weight * loc, axis=-2) / ops.sum(weight, axis=-2)

        return broadcast_update
    weighted_loc = precision * loc
    if backend == "torch" and precision.shape[-3] == 1 and loc.shape[-3] == 1:
        # The same precision for every start: one batched matrix product,
        # (..., S, K) @ (..., K, 2D), without broadcasting to the starts.
        d = loc.shape[-1]
        stacked = ops.concatenate([weighted_loc, precision], axis=-1)[..., 0, :, :]

        def stacked_update(resp: Tensor) -> Tensor:
            # einsum, not ops.matmul: Keras' torch matmul computes float64 in float32.
            both = ops.einsum("...sk,...kd->...sd", resp, stacked)
            return both[..., :d] / both[..., d:]

        return stacked_update

    def update(resp: Tensor) -> Tensor:
        # Contractions need equal batch axes: a start-independent precision or
        # loc (axis -3 of size 1) is broadcast to the starts first.
        shape = (*ops.shape(resp), precision.shape[-1])
        return ops.einsum("...k,...kd->...d", resp, ops.broadcast_to(weighted_loc, shape)) / (
            ops.einsum("...k,...kd->...d", resp, ops.broadcast_to(precision, shape))
        )

    return update


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gaussian_abs_moment(m: Tensor, v: Tensor) -> Tensor:
    """`E|m + sqrt(v) Z|`, `Z ~ N(0, 1)`: `m (2 Phi(m / sqrt v) - 1) + 2 sqrt v phi(m / sqrt v)`."""
    s = ops.sqrt(v)
    z = m / s
    return m * ops.erf(z * _SQRT_HALF) + 2.0 * s * _INV_SQRT_2PI * ops.exp(-0.5 * ops.square(z))


def gaussian_crps_terms(loc: Tensor, sd: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """`Family.crps_terms` of Gaussian marginals `N(loc, sd^2)`, `(..., K, D)` (Grimit et al.)."""
    var = ops.square(sd)
    to_y = gaussian_abs_moment(y - loc, var)
    pair = gaussian_abs_moment(
        ops.expand_dims(loc, -2) - ops.expand_dims(loc, -3),
        ops.expand_dims(var, -2) + ops.expand_dims(var, -3),
    )
    return to_y, pair
