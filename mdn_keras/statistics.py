"""Summary statistics of the mixture an MDN head predicts, in `keras.ops` only.

With `pi = softmax(logits)` and components with means `m_k`, covariances `C_k`:

    mean        E[y]   = sum_k pi_k m_k
    covariance  Cov[y] = sum_k pi_k (C_k + (m_k - E[y]) (m_k - E[y])^T)   (total covariance)
    variance    its diagonal, per dimension
    mode        argmax_y p(y), by a fixed-point iteration started from every component
    cdf         F(y)   = sum_k pi_k F_k(y)                            (output_dim == 1)
    quantile    F^-1(q), by bisection on F                            (output_dim == 1)

The component moments, cdfs and fixed-point updates are the family's
(`mdn_keras.families`); the mixture logic here is written once for all.
Every function takes `(params, output_dim, num_mixtures, ...)` with `params` of
shape `(..., params_size(output_dim, num_mixtures, component))` (any number of
leading axes) and a keyword `component=` (`"normal"` by default), and works on
the TensorFlow, JAX and PyTorch backends, inside `jax.jit` and `tf.function`
too. TensorFlow Probability is not needed. Called eagerly on JAX or
TensorFlow, the quantile bisection and `mixture_mode` run as one cached
compiled program (`mdn_keras._compile`); inside a trace they are traced as is.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import keras
import ml_dtypes
import numpy as np
from keras import ops

from mdn_keras import _compile
from mdn_keras.checks import is_real, levels
from mdn_keras.density import check_target
from mdn_keras.families import ComponentLike, Family, get_family
from mdn_keras.params import check_params, check_positive_int, split_unchecked
from mdn_keras.sampling import select_component
from mdn_keras.shapes import reduce_max, reduce_min
from mdn_keras.special import repeat
from mdn_keras.symbolic import accepts_symbolic
from mdn_keras.types import Tensor

#: Bisection steps of `mixture_quantile`: the bracket shrinks by 2^-64, below the
#: float32 and float64 spacing of any value in it, so the result is exact to the
#: resolution of `mixture_cdf`.
DEFAULT_QUANTILE_ITERATIONS = 64
DEFAULT_MODE_ITERATIONS = 31
DEFAULT_MODE_TOLERANCE = 1e-6


def mixing_probs(logits: Tensor) -> Tensor:
    """`softmax(logits)` over the last axis (also for a single component, without warning)."""
    return ops.exp(logits - ops.logsumexp(logits, axis=-1, keepdims=True))


def _split(params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike) -> tuple:
    """`(family, params, logits, parts)` of checked `params`."""
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    logits, parts = split_unchecked(params, output_dim, num_mixtures, family)
    return family, params, logits, parts


def mixture_mean(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Tensor:
    """The mixture mean `E[y] = sum_k pi_k m_k`.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(..., D)`. NaN where a component's mean does not exist (a Student-t
        with `df <= 1`), as TFP returns it.
    """
    family, _, logits, parts = _split(params, output_dim, num_mixtures, component)
    probs = ops.expand_dims(mixing_probs(logits), -1)
    return ops.sum(probs * family.mean(parts), axis=-2)


def mixture_variance(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Tensor:
    """Per-dimension variance of the mixture (the diagonal of its covariance).

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(..., D)`: `sum_k pi_k (var_k + (m_k - mean)^2)`; inf or NaN where a
        component's variance is (a Student-t with `df <= 2`), as TFP returns it.
    """
    family, _, logits, parts = _split(params, output_dim, num_mixtures, component)
    probs = ops.expand_dims(mixing_probs(logits), -1)
    loc = family.mean(parts)
    mean = ops.sum(probs * loc, axis=-2, keepdims=True)
    # Law of total variance, k the component:
    #     Var[y] = E[Var[y|k]] + Var[E[y|k]]
    #            = sum_k pi_k var_k + sum_k pi_k (m_k - E[y])^2
    # summed as one non-negative sum (no E[y^2] - E[y]^2 cancellation).
    return ops.sum(probs * (family.variance(parts) + ops.square(loc - mean)), axis=-2)


def mixture_covariance(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Tensor:
    """The full covariance matrix of the mixture.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(..., D, D)`: `sum_k pi_k (C_k + (m_k - mean)(m_k - mean)^T)` (the law
        of total covariance), symmetric. Its diagonal is `mixture_variance`.
        Off-diagonal entries come from the spread of the component means, and,
        for `"mvn_tril"`, from each component's own correlations.
    """
    family, _, logits, parts = _split(params, output_dim, num_mixtures, component)
    probs = mixing_probs(logits)
    loc = family.mean(parts)
    mean = ops.sum(ops.expand_dims(probs, -1) * loc, axis=-2, keepdims=True)
    centred = loc - mean  # (..., K, D)
    between = ops.expand_dims(centred, -1) * ops.expand_dims(centred, -2)  # (..., K, D, D)
    within = family.covariance(parts)
    return ops.sum(probs[..., None, None] * (within + between), axis=-3)


def mixture_stddev(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Tensor:
    """`sqrt(mixture_variance)`, per dimension: `(..., D)`."""
    return ops.sqrt(mixture_variance(params, output_dim, num_mixtures, component))


def most_probable_component_mean(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Tensor:
    """Location `loc_k` of the component with the largest mixing weight: `(..., D)`.

    Ties go to the lowest component index. This is the common "sample with
    temperature 0" point estimate; it is not the mode of the mixture when
    components overlap (see `mixture_mode`).
    """
    _, _, logits, parts = _split(params, output_dim, num_mixtures, component)
    return select_component(parts[0], ops.argmax(logits, axis=-1))


def _with_start_axis(family: Family, parts: tuple) -> tuple:
    """Parts `(..., K, *event)` -> `(..., 1, K, *event)`: one copy per start."""
    return tuple(
        ops.expand_dims(part, -2 - ndims)
        for part, ndims in zip(parts, family.part_event_ndims(), strict=True)
    )


@accepts_symbolic
def mixture_mode(
    params: Tensor,
    output_dim: int,
    num_mixtures: int,
    num_iterations: int = DEFAULT_MODE_ITERATIONS,
    tolerance: float = DEFAULT_MODE_TOLERANCE,
    component: ComponentLike = "normal",
) -> Tensor:
    """The highest-density point of the mixture, `argmax_y p(y)`, found numerically.

    Runs a fixed-point iteration `x <- F(x)` whose fixed points are the
    stationary points of `log p`: with `r_k(x)` the posterior responsibilities
    (softmax of `component_log_prob` at `x`),

        F(x) = (sum_k r_k(x) P_k(x))^-1  sum_k r_k(x) P_k(x) loc_k

    where `P_k(x)` is the family's local precision: `diag(1 / scale_k^2)` for
    `"normal"` (Gaussian mean-shift, an EM step), `(L_k L_k^T)^-1` for
    `"mvn_tril"`, `(df + 1) / (df scale^2 + (x - loc)^2)` for `"student_t"`
    (the EM weight of a t), `1 / (b |x - loc|)` for `"laplace"` (iteratively
    reweighted least squares). Each step of `F` raises `log p`, but only
    linearly, and slowly along the flat ridges where two modes are about to
    merge, so the iteration is accelerated by SQUAREM (Varadhan and Roland,
    2008, scheme S3). One cycle, from `x0` with `x1 = F(x0)`:

        r = x1 - x0,  v = F(x1) - 2 x1 + x0,  alpha = min(-|r| / |v|, -1)
        xa = x0 - 2 alpha r + alpha^2 v

    (norms over the dimensions, each divided by the smallest component
    spread in it; `alpha = -1` gives the plain double step `F(F(x0))`).
    `alpha` is chosen per row and per start, and bounded per start by a step
    limit that grows 4-fold after a kept step at the limit and falls to a
    quarter of a rejected step (after the `SQUAREM` R package). `xa` is kept
    where its `log p` is at least that of `x1` (NaN is not), otherwise the
    plain step `x1` is taken; the next cycle starts from the kept point and
    its `F` (the stabilising step of S3). So no start's `log p` decreases
    (up to rounding),
    and a cycle costs two evaluations of the component log-densities and two
    of `F`, as two plain steps do: the log-densities of each point are
    computed once and serve the responsibilities, the safeguard and the
    final choice. Where plain mean-shift needs hundreds of steps (modes
    about to merge), this takes tens.

    The iteration starts from every component location at once (the `K`
    starts are an extra axis), so it finds every mode whose basin holds a
    component location, which in practice is every mode worth having. The
    result is the end point with the highest `log_prob`, compared also with
    the `K` starting locations, so it never has a lower density than the
    best component location (between points whose float32 log-densities
    tie, either may win).

    Exactness: for Gaussian families a fixed point is a stationary point of
    `log p`. For `"laplace"` the 1-D mixture density is convex between the
    component locations, so its mode is one of them and the result is exact
    for `D == 1`; for `D > 1` it is the best of the component locations and
    the iteration's end points (the true mode lies on the grid of
    per-dimension locations). For `"student_t"` a fixed point is a
    stationary point of `log p` as for Gaussians.

    Stopping: each row (each index of the leading axes) stops once at every
    one of its starts the next plain update `F(x) - x` is, in every
    dimension, at most `tolerance` times the smallest component spread of
    that dimension plus the float resolution of `x` (4 machine epsilons of
    `|x|`: in float32 a smaller step is rounding noise, and without this
    allowance the loop would never stop away from the origin). A row that
    has stopped keeps its points while others still run, so a row's result
    does not depend on the other rows of the batch (on a CPU bit for bit;
    GPU kernels may round differently by batch size). The loop is
    `keras.ops.while_loop` (static shapes, so it compiles under `jax.jit`
    and `tf.function`); where loops run in Python on a CPU (PyTorch), in
    batches of `COMPACT_MIN_ROWS` rows or more the stopped rows leave the
    batch instead, so later cycles cost only the rows still running (on
    100,000 random rows, about a quarter of them after six cycles; on a GPU
    the gathers cost more than they save).
    Every row runs at most `max(1, (num_iterations - 1) // 2)` cycles, so
    with the update before them at most `num_iterations` updates (3 where
    `num_iterations < 3`). With the default, 31 updates (15 cycles), on
    100,000 random rows (`D = 2`, `K = 5`) 1.5% of the rows, with starts on
    flat ridges where two modes nearly merge, are still moving then, yet
    every result's `log p` is within 1e-6 of that of the float64 iteration
    run to convergence (200 plain steps left one row 7e-3 below). On such a
    ridge the result is a point on the ridge.

    Derivative: the search runs on constants (no derivative through its
    loop); where a derivative is taken the result carries that of
    `num_iterations` plain steps of `F` from the mode, `x_n = F(x_{n-1};
    theta)`, on every backend, while its value stays the search's, bit for
    bit. At a fixed point that is the implicit function's derivative
    `(I - dF/dx)^-1 dF/dtheta` summed as its series `sum_n (dF/dx)^n
    dF/dtheta`, whose error falls as `rho^n`, `rho` the iteration's rate
    (the largest eigenvalue of `dF/dx`: about 0 where one component
    dominates the mode, near 1 where two modes are about to merge, where the
    mode itself moves fast). At a `"laplace"` mode on a component location
    it is that location's derivative. The updates run only when a
    derivative is taken (on JAX and TensorFlow also inside compiled
    functions: `jax.jit` inference does not run them), in float32 for
    half-precision params; where they overflow the value is kept and the
    derivative there is 0.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        num_iterations: maximum number of updates `F`, a positive int.
        tolerance: stopping threshold, a number `>= 0`, relative to the scales.
        component: the component family (`"normal"` by default).

    Returns:
        `(..., D)`, in `params.dtype`.
    """
    num_iterations = check_positive_int("num_iterations", num_iterations)
    if not is_real(tolerance) or not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(
            f"Expected `tolerance` to be a finite number >= 0. Received: tolerance={tolerance!r}"
        )
    tolerance = float(tolerance)
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    options: dict[str, Any] = dict(family=family, output_dim=output_dim, num_mixtures=num_mixtures)
    mode = _compile.call(
        _searched_mode,
        ops.stop_gradient(params),
        num_iterations=num_iterations,
        tolerance=tolerance,
        **options,
    )
    if not _compile.may_be_differentiated(params):
        return mode  # the derivative's steps would cost about as much as the search
    return _compile.call(
        _with_fixed_point_derivative, params, mode, steps=num_iterations, xla_=False, **options
    )


def _searched_mode(
    params: Tensor,
    *,
    family: Family,
    output_dim: int,
    num_mixtures: int,
    num_iterations: int,
    tolerance: float,
) -> Tensor:
    """`mixture_mode` of checked `params`, with no derivative."""
    logits, parts = split_unchecked(params, output_dim, num_mixtures, family)
    return _mode_search(family, logits, parts, num_iterations, tolerance)[0]


def _with_fixed_point_derivative(
    params: Tensor, x: Tensor, *, family: Family, output_dim: int, num_mixtures: int, steps: int
) -> Tensor:
    """`x` (a mode, `(..., D)`), carrying the derivative of `steps` plain steps
    of the mode iteration `F` from it (see `mixture_mode`), built only when a
    derivative is taken (`_compile.with_derivative_of`). The value is `x` itself.
    """
    x = ops.stop_gradient(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    # Half precision: the updates' precisions (1 / scale^2, Laplace's floored
    # 1 / (b |x - m|)) overflow float16; the steps run in float32.
    work = "float32" if dtype in ("float16", "bfloat16") else dtype

    def moved(p: Tensor) -> Tensor:
        logits, parts = split_unchecked(ops.cast(p, work), output_dim, num_mixtures, family)
        iteration = _ModeIteration(
            family,
            ops.log_softmax(logits, axis=-1),
            parts,
            ops.ones_like(parts[0][..., :1, :]),  # no stopping rule here
            0.0,
            0.0,
            False,
        )

        def step(_: Any, carry: tuple) -> tuple:
            (point,) = carry
            return (iteration.update(point),)

        (end,) = repeat(steps, step, (ops.expand_dims(ops.cast(x, work), -2),))
        return ops.cast(end[..., 0, :], dtype)

    return _compile.with_derivative_of(x, moved, params)


def _mode_search(
    family: Family,
    logits: Tensor,
    parts: tuple,
    num_iterations: int,
    tolerance: float,
    accelerate: bool = True,
    compact: Optional[bool] = None,
) -> tuple[Tensor, Tensor]:
    """`(mode (..., D), cycles)` of `mixture_mode` (no checks).

    `cycles` (an int32 scalar) counts the loop's cycles (those of the row
    that ran longest); `accelerate=False` runs the plain iteration with the
    same stopping rule (two steps of `F` a cycle), for comparison.
    `compact` picks the loop that drops stopped rows (eager tensors only);
    `None` picks it where loops run in Python on a CPU, for
    `COMPACT_MIN_ROWS` rows or more.
    """
    loc = parts[0]
    resolution = 4.0 * float(np.finfo(keras.backend.standardize_dtype(loc.dtype)).eps)
    search = _ModeIteration(
        family,
        ops.log_softmax(logits, axis=-1),
        parts,
        reduce_min(family.spread(parts), axis=-2, keepdims=True),  # (..., 1, D)
        tolerance,
        resolution,
        accelerate,
    )
    start = search.start(loc)
    max_cycles = max(1, (num_iterations - 1) // 2)
    if compact is None:
        compact = (
            _runs_python_loops(loc)
            and _on_cpu(loc)
            and math.prod(loc.shape[:-2]) >= COMPACT_MIN_ROWS
        )
    if compact:
        x, log_p, cycles = _compacting_loop(search, start, max_cycles)
    else:
        x, log_p, cycles = _masked_loop(search, start, max_cycles)
    candidates = ops.concatenate([x, loc], axis=-2)  # (..., 2K, D)
    scores = ops.concatenate([log_p, start[1]], axis=-1)  # (..., 2K)
    return select_component(candidates, ops.argmax(scores, axis=-1)), cycles


class _ModeIteration:
    """The accelerated iteration of `mixture_mode` on one batch of rows.

    It holds the rows' log weights `(..., K)`, parts `(..., K, *event)` and
    smallest spread per dimension `(..., 1, D)`, with the family's prepared
    log-density and update (the parameters' own terms computed once). A
    state is `(x, log_p, fx, excess, cap)`: the points `(..., S, D)` (one
    per start, `S = K`), their `log p` `(..., S)`, `F(x)`, each row's
    excess over the stopping threshold `(...)` (the row is done where it is
    `<= 0`) and each start's step bound `(..., S, 1)`.
    """

    def __init__(
        self,
        family: Family,
        log_pi: Tensor,
        parts: tuple,
        min_spread: Tensor,
        tolerance: float,
        resolution: float,
        accelerate: bool,
    ) -> None:
        self.family, self.log_pi, self.parts, self.min_spread = family, log_pi, parts, min_spread
        self.options = (tolerance, resolution, accelerate)
        parts_s = _with_start_axis(family, parts)  # (..., 1, K, *event): one copy per start
        self._log_w = ops.expand_dims(log_pi, -2)  # (..., 1, K)
        self._log_prob = family.log_prob_fn(parts_s)
        self._update = family.mode_update_fn(parts_s)  # (resp, x) -> F(x)

    def take(self, rows: Tensor) -> _ModeIteration:
        """The iteration on `rows` (int indices) of a batch with one leading axis."""
        return self._map_rows(lambda t, _: ops.take(t, rows, axis=0))

    def flat(self) -> _ModeIteration:
        """The same rows with the leading axes flattened into one."""
        return self._map_rows(_flat_rows)

    def _map_rows(self, fn: Callable[[Tensor, int], Tensor]) -> _ModeIteration:
        """The iteration on `fn(t, trailing)` of each of its row tensors `t`,
        whose last `trailing` axes belong to one row."""
        return _ModeIteration(
            self.family,
            fn(self.log_pi, 1),
            tuple(
                fn(part, 1 + ndims)
                for part, ndims in zip(self.parts, self.family.part_event_ndims(), strict=True)
            ),
            fn(self.min_spread, 2),
            *self.options,
        )

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """`(log p(x_s) (..., S), responsibilities (..., S, K))`."""
        weighted = self._log_w + self._log_prob(ops.expand_dims(x, -2))
        # log-sum-exp and softmax sharing one exp (the max is finite: log_prob is).
        top = reduce_max(weighted, axis=-1, keepdims=True)
        terms = ops.exp(weighted - top)
        total = ops.sum(terms, axis=-1, keepdims=True)
        return (top + ops.log(total))[..., 0], terms / total

    def update(self, x: Tensor) -> Tensor:
        """`F(x)`, `(..., S, D)`: one plain step from each point."""
        return self._update(self.evaluate(x)[1], x)

    def excess(self, x: Tensor, fx: Tensor) -> Tensor:
        """Each row's largest excess of a plain step over the stopping threshold, `(...)`.

        NaN entries (NaN parameters) are left out: their result is NaN
        whatever the loop does, and a NaN would keep their row running.
        """
        tolerance, resolution, _ = self.options
        limit = tolerance * self.min_spread + resolution * ops.abs(x)
        over = ops.abs(fx - x) - limit
        return reduce_max(ops.where(ops.isnan(over), -np.inf, over), axis=(-2, -1))

    def start(self, loc: Tensor) -> tuple:
        """The state at the component locations `loc` `(..., K, D)`."""
        log_p, resp = self.evaluate(loc)
        fx = self._update(resp, loc)
        cap = ops.ones_like(loc[..., :1])  # the largest |alpha| tried, per start
        return loc, log_p, fx, self.excess(loc, fx), cap

    def cycle(self, state: tuple) -> tuple:
        """One cycle of the loop from `state` (two evaluations, two updates)."""
        x0, log_p0, x1, _, cap = state
        log_p1, resp1 = self.evaluate(x1)
        x2 = self._update(resp1, x1)
        if not self.options[2]:
            log_p2, resp2 = self.evaluate(x2)
            fx = self._update(resp2, x2)
            return x2, log_p2, fx, self.excess(x2, fx), cap
        spread = self.min_spread
        r = x1 - x0
        v = x2 - 2.0 * x1 + x0
        r_norm = ops.sqrt(ops.sum(ops.square(r / spread), axis=-1, keepdims=True))
        v_norm = ops.sqrt(ops.sum(ops.square(v / spread), axis=-1, keepdims=True))
        alpha = -r_norm / ops.where(v_norm > 0, v_norm, 1.0)
        alpha = ops.where(alpha < -1.0, alpha, -1.0)
        alpha = ops.where(alpha > -cap, alpha, -cap)
        xa = x0 - 2.0 * alpha * r + ops.square(alpha) * v
        log_pa, resp_a = self.evaluate(xa)
        fa = self._update(resp_a, xa)
        # NaN or a lower density at the extrapolated point: the plain step.
        keep = log_pa >= log_p1
        keep_d = ops.expand_dims(keep, -1)
        # The step bound grows 4-fold where a step at the bound was kept, and
        # drops to a quarter of a rejected step (at least 1).
        grown = ops.where(alpha <= -cap, 4.0 * cap, cap)
        shrunk = ops.where(alpha < -4.0, -0.25 * alpha, 1.0)
        cap = ops.where(keep_d, grown, shrunk)
        x = ops.where(keep_d, xa, x1)
        fx = ops.where(keep_d, fa, x2)
        log_p = ops.where(keep, log_pa, log_p1)
        return x, log_p, fx, self.excess(x, fx), cap


def _masked_loop(search: _ModeIteration, state: tuple, max_cycles: int) -> tuple:
    """`(x, log_p, cycles)` after `ops.while_loop` (static shapes: it compiles).

    Every row runs until it is done or the loop ends; a done row keeps its
    state, so the result of a row does not depend on the other rows.
    """

    def cond(*loop: Tensor) -> Tensor:
        return ops.any(loop[3] > 0.0)

    def body(*loop: Tensor) -> tuple:
        old, cycles = loop[:-1], loop[-1]
        moving = old[3] > 0.0
        new = tuple(
            ops.where(_expand_to(moving, t.ndim), t, o)
            for t, o in zip(search.cycle(old), old, strict=True)
        )
        return (*new, cycles + 1)

    loop = (*state, ops.convert_to_tensor(0, dtype="int32"))
    x, log_p, _, _, _, cycles = ops.while_loop(cond, body, loop, maximum_iterations=max_cycles)
    return x, log_p, cycles


def _compacting_loop(search: _ModeIteration, state: tuple, max_cycles: int) -> tuple:
    """`_masked_loop`'s result, iterating only the rows still running.

    For backends that run loops in Python (PyTorch): after each cycle the
    finished rows leave the batch, so late cycles cost a fraction of the
    first ones (on random mixtures about a quarter of the rows still run
    after 6 cycles). The arithmetic of each row is the same as in the
    masked loop.
    """
    x_full, log_p_full = state[0], state[1]
    lead = tuple(x_full.shape[:-2])
    if 0 in lead:
        return x_full, log_p_full, ops.convert_to_tensor(0, dtype="int32")
    search = search.flat()
    state = tuple(_flat_rows(t, t.ndim - len(lead)) for t in state)
    rows = ops.arange(int(state[0].shape[0]), dtype="int32")
    done_rows, done_x, done_log_p = [], [], []
    cycles = 0
    while True:
        moving = state[3] > 0.0 if cycles < max_cycles else ops.zeros_like(state[3], "bool")
        finished = ops.logical_not(moving)
        if bool(ops.any(finished)):
            (left,) = ops.nonzero(finished)
            done_rows.append(ops.take(rows, left, axis=0))
            done_x.append(ops.take(state[0], left, axis=0))
            done_log_p.append(ops.take(state[1], left, axis=0))
            if int(left.shape[0]) == int(rows.shape[0]):
                break
            (kept,) = ops.nonzero(moving)
            rows = ops.take(rows, kept, axis=0)
            state = tuple(ops.take(t, kept, axis=0) for t in state)
            search = search.take(kept)
        state = search.cycle(state)
        cycles += 1
    order = ops.argsort(ops.concatenate(done_rows, axis=0))
    x = ops.take(ops.concatenate(done_x, axis=0), order, axis=0)
    log_p = ops.take(ops.concatenate(done_log_p, axis=0), order, axis=0)
    return (
        ops.reshape(x, x_full.shape),
        ops.reshape(log_p, log_p_full.shape),
        ops.convert_to_tensor(cycles, dtype="int32"),
    )


#: Fewest rows for which `mixture_mode` on PyTorch drops stopped rows from its
#: loop: below about a thousand rows the gathers cost more than they save
#: (eager PyTorch, D=2, K=5: 1.35-1.6x the masked loop's time at 16-256 rows,
#: 0.73x at 1,024, 0.57x at 4,096). On a GPU the masked loop is used at every
#: size: each gather waits for the device (H200, 100,000 rows: the compacting
#: loop took 1.57x the masked loop's time).
COMPACT_MIN_ROWS = 1024


def _runs_python_loops(x: Tensor) -> bool:
    """True where `ops.while_loop` would run as a Python loop on concrete values (PyTorch)."""
    return keras.backend.backend() == "torch" and not isinstance(x, keras.KerasTensor)


def _on_cpu(x: Tensor) -> bool:
    """Whether the tensor `x` lives in host memory (PyTorch's `device.type`; else True)."""
    device = getattr(x, "device", None)
    return getattr(device, "type", "cpu") == "cpu"


def _flat_rows(t: Tensor, trailing: int) -> Tensor:
    """`t` with every axis but its `trailing` last ones flattened into one."""
    return ops.reshape(t, (-1, *t.shape[t.ndim - trailing :]))


def _expand_to(mask: Tensor, ndim: int) -> Tensor:
    """`mask` with trailing axes of size 1 up to `ndim` axes."""
    for _ in range(ndim - mask.ndim):
        mask = ops.expand_dims(mask, -1)
    return mask


def _check_1d(name: str, output_dim: int) -> None:
    check_positive_int("output_dim", output_dim)
    if output_dim != 1:
        raise ValueError(
            f"`{name}` is defined for 1-D outputs only. Expected output_dim == 1. "
            f"Received: output_dim={output_dim}"
        )


def marginal_cdf(
    params: Tensor,
    y: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> Tensor:
    """Each dimension's marginal cdf `F_d(y_d) = sum_k pi_k F_kd(y_d)`: `(..., D)`.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        y: `(..., D)` values whose leading axes broadcast with `params.shape[:-1]`
            (`(...)` when `D == 1`).
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(..., D)`, in `[0, 1]`: for `D == 1` the cdf, in general the
        probability integral transform of each coordinate.

    Raises:
        NotImplementedError: for a family without a cdf in `keras.ops`.
    """
    return _checked_marginal_cdf(params, y, output_dim, num_mixtures, component)


def _checked_marginal_cdf(
    params: Tensor,
    y: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike,
    portable: bool = False,
) -> Tensor:
    """`marginal_cdf` (`portable=True`: the family's elementwise cdf), `(..., D)`."""
    family, params, logits, parts = _split(params, output_dim, num_mixtures, component)
    y = check_target(y, params, output_dim)
    return _marginal_cdf(family, mixing_probs(logits), parts, y, portable)


def _marginal_cdf(
    family: Family, probs: Tensor, parts: tuple, y: Tensor, portable: bool = False
) -> Tensor:
    """`sum_k probs_k F_kd(y_d)`: `(..., K)` probs, `(..., D)` y -> `(..., D)`."""
    component_cdf = family.cdf(parts, ops.expand_dims(y, -2), portable)  # (..., K, D)
    if component_cdf.shape[-1] == 1:
        # Summed over a last axis of size K: XLA on CPUs reduces the middle
        # axis of (..., K, 1) about ten times slower (the bisection's hot spot).
        return ops.expand_dims(ops.sum(probs * component_cdf[..., 0], axis=-1), -1)
    return ops.sum(ops.expand_dims(probs, -1) * component_cdf, axis=-2)


def mixture_cdf(
    params: Tensor,
    y: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> Tensor:
    """`P(Y <= y)` for a 1-D mixture: `sum_k pi_k F_k(y)`.

    For Gaussian components `F_k(y) = erfc((loc_k - y) / (sqrt(2) scale_k)) / 2`,
    accurate relative to its size in the left tail; `1 - F` near 1 keeps only
    the float precision (~1e-7 in float32), so use `log_prob` for tail
    densities. The Student-t cdf is `mdn_keras.special.student_t_cdf`
    (absolute error below 2e-6 in float32).

    Args:
        params: `(..., params_size(1, num_mixtures, component))` flat MDN output with
            `output_dim == 1`.
        y: `(..., 1)` or `(...)` values whose leading axes broadcast with
            `params.shape[:-1]`.
        output_dim: must be 1.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(...)`, in `[0, 1]`.

    Raises:
        ValueError: if `output_dim != 1` or the shapes do not match.
    """
    _check_1d("mixture_cdf", output_dim)
    return marginal_cdf(params, y, output_dim, num_mixtures, component)[..., 0]


@accepts_symbolic
def mixture_quantile(
    params: Tensor,
    q: Union[float, Tensor],
    output_dim: int,
    num_mixtures: int,
    num_iterations: int = DEFAULT_QUANTILE_ITERATIONS,
    component: ComponentLike = "normal",
) -> Tensor:
    """The `q`-quantile `F^-1(q)` of a 1-D mixture, by vectorised bisection.

    Bisects `mixture_cdf` on the bracket
    `[min_k(loc_k - w_k), max_k(loc_k + w_k)]`, where `F` is 0 and 1 to float
    precision (`w_k` is the family's `quantile_halfwidth`: 40 scales for
    Gaussians, 750 for Laplace, and for Student-t a tail bound that leaves at
    most `min(q, 1 - q)` outside), for at most `num_iterations` steps (a
    jit-friendly loop). The default 64 halves the bracket below the float32
    and float64 spacing, so the answer is as exact as `mixture_cdf` allows:
    where the density at the quantile is `p`, its error is about `1e-7 / p`
    in float32. The loop ends early once a step changes no bracket (all have
    reached adjacent floats, 45-57 steps in float32), with the bits the
    remaining steps would give. Where `F` is flat at level `q` (a gap
    between components) any point of the flat stretch is a valid quantile.

    The quantile has a first derivative with respect to `params` and `q` on
    every backend (`jax.grad`, `tf.GradientTape` eagerly or inside a
    compiled function, `torch.autograd`), by the implicit function theorem:
    from `F(x; theta) = q`, `dx = (dq - dF/dtheta dtheta) / p(x)`, with `p`
    the mixture density at `x`. The loop itself is not differentiated (it
    runs on constants); one more cdf pass carries the derivative, and only
    where a derivative is taken (not for concrete JAX arrays, PyTorch
    tensors without `requires_grad`, or eager TensorFlow outside a
    `GradientTape`; in compiled calls on JAX and TensorFlow, `jax.jit` or
    `model.predict`, it is built only when they are differentiated). Limits: first order
    only (second derivatives are wrong); PyTorch forward mode
    (`torch.func.jvp`, dual tensors) gets no tangent; in float32 the
    derivative with respect to the mixture logits loses digits at levels
    near 1 (about 1e-4 relative at `q = 0.98`, 15% at `1 - 1e-6`: `F` is
    evaluated, not `1 - F`); a NaN level, or a density at the quantile below
    the smallest normal float, gives a derivative of 0.

    The shape rule for `q` is NumPy's (`numpy.quantile`), the same on every
    backend for Python numbers, NumPy arrays and tensors, plus a per-row form:

    * a number or a 0-d array/tensor: result of shape `params.shape[:-1]`;
    * shape `(Q,)`: result of shape `(Q, *params.shape[:-1])`, every level
      for every row (`Mixture.quantile([0.1, 0.9])` on 2 rows is `(2, 2)`);
    * shape `(Q, *params.shape[:-1])`: one level per row (and per entry of
      the first axis), result of the same shape; `q[None]` for one level per row.

    Any other shape raises a `ValueError` naming both shapes.

    Args:
        params: `(..., params_size(1, num_mixtures, component))` flat MDN output with
            `output_dim == 1`.
        q: probabilities in `(0, 1)`, shaped as above. Python and NumPy values
            are checked; tensor values are not (they may only be known inside
            a compiled graph): a tensor level outside `(0, 1)`, or NaN, gives
            NaN at its position.
        output_dim: must be 1.
        num_mixtures: `K`.
        num_iterations: bisection steps, a positive int.
        component: the component family (`"normal"` by default).

    Returns:
        Quantiles of shape `params.shape[:-1]` or `(Q, *params.shape[:-1])`,
        as above, in `params.dtype`.

    Raises:
        ValueError: if `output_dim != 1`, a Python-number or NumPy `q` is
            outside `(0, 1)`, or `q` has another shape.
        NotImplementedError: for a family without a cdf in `keras.ops`.
    """
    _check_1d("mixture_quantile", output_dim)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    q = levels("q", q, params)
    return _bisect_quantile(family, params, q, num_mixtures, num_iterations)


def _bisect_quantile(
    family: Family,
    params: Tensor,
    q: Tensor,
    num_mixtures: int,
    num_iterations: int,
    portable: bool = False,
) -> Tensor:
    """Quantiles at levels `q` that broadcast against `params.shape[:-1]` (no checks).

    Levels outside (0, 1), or NaN, give NaN. `portable=True` unrolls the
    loop and uses the family's elementwise cdf (see `mdn_keras.portable`).
    Called eagerly on JAX or TensorFlow it runs compiled (`mdn_keras._compile`).
    """
    options: dict[str, Any] = dict(
        family=family, num_mixtures=num_mixtures, num_iterations=num_iterations, portable=portable
    )
    extra = len(q.shape) - (len(params.shape) - 1)
    known = extra > 0 and all(isinstance(n, int) for n in q.shape[:extra])
    levels = math.prod(q.shape[:extra]) if known else 0
    if portable:
        return _compile.call(_bisect, params, q, **options)
    # The bisection runs on constants (no derivative through its loop); the
    # root then carries the implicit function's derivative.
    constant_params, constant_q = ops.stop_gradient(params), ops.stop_gradient(q)
    if 1 < levels <= _MAX_SPLIT_LEVELS and _compile.compiles_here(params, q):
        # Compiled eagerly with a few levels on leading axes (an interval's
        # two ends): one bisection per level. XLA on CPUs evaluates the
        # stacked (Q, ..., K) layout several times slower than Q separate
        # ones (JAX: 1.3 s against 2 x 0.19 s, 100,000 rows). Traced calls,
        # whose shapes may be unknown, keep the stacked layout.
        flat = ops.reshape(constant_q, (levels, *q.shape[extra:]))
        ends = [_compile.call(_bisect, constant_params, flat[i], **options) for i in range(levels)]
        root = ops.reshape(ops.stack(ends), (*q.shape[:extra], *ends[0].shape))
    else:
        root = _compile.call(_bisect, constant_params, constant_q, **options)
    if not _compile.may_be_differentiated(params, q):
        return root  # the derivative's cdf pass would cost 10-25% of the time
    # TensorFlow: without XLA, whose compiled functions cannot hand a loop's
    # saved values (the Student-t cdf's) to their gradient under an eager tape.
    return _compile.call(
        _with_root_derivative,
        params,
        q,
        root,
        family=family,
        num_mixtures=num_mixtures,
        xla_=False,
    )


#: At most this many leading levels are bisected one by one (see `_bisect_quantile`).
_MAX_SPLIT_LEVELS = 8


def _with_root_derivative(
    params: Tensor, q: Tensor, x: Tensor, *, family: Family, num_mixtures: int
) -> Tensor:
    """`x` (a root of `F(x) = q`), with the derivative of the implicit function.

    `F(x(theta, q); theta) = q` gives `dx = (dq - dF/dtheta dtheta) / p(x)`.
    That is the derivative of `step = (q - F(x0; theta)) / p(x0)` at the
    fixed `x0 = x` (the density held constant: its own derivative is
    multiplied by `q - F`, which is zero at the root), which `x` carries
    (`_compile.with_derivative_of`: the cdf pass runs only when a derivative
    is taken); the value is `x`, bit for bit. Where the density at `x` is
    below the smallest normal float (a gap between components, where the
    quantile is not unique), or `x` is NaN, the derivative is 0.
    """
    x0 = ops.stop_gradient(x)[..., None]  # (..., 1)
    # A NaN root (a level outside (0, 1)) gets a derivative of 0; its cdf's
    # partials at NaN would be NaN, and 0 * NaN would reach every row's
    # parameters in a reverse pass.
    x0 = ops.where(ops.isfinite(x0), x0, ops.zeros_like(x0))
    # ml_dtypes (a Keras dependency) also knows bfloat16, which NumPy does not.
    tiny = float(ml_dtypes.finfo(keras.backend.standardize_dtype(x.dtype)).tiny)

    def step(params: Tensor, q: Tensor) -> Tensor:
        logits, parts = split_unchecked(params, 1, num_mixtures, family)
        cdf = _marginal_cdf(family, mixing_probs(logits), parts, x0)[..., 0]
        log_w = ops.log_softmax(ops.stop_gradient(logits), axis=-1)
        stopped = tuple(ops.stop_gradient(t) for t in parts)
        log_density = ops.logsumexp(
            log_w + family.log_prob(stopped, ops.expand_dims(x0, -2)), axis=-1
        )
        density = ops.exp(log_density)
        usable = density >= tiny
        out = (q - cdf) / ops.where(usable, density, ops.ones_like(density))
        return ops.where(usable, out, ops.zeros_like(out))

    return _compile.with_derivative_of(x, step, params, ops.cast(q, x.dtype))


def _bisect(
    params: Tensor,
    q: Tensor,
    *,
    family: Family,
    num_mixtures: int,
    num_iterations: int,
    portable: bool,
) -> Tensor:
    """The body of `_bisect_quantile`, a pure function of `params` and `q`."""
    logits, parts = split_unchecked(params, 1, num_mixtures, family)
    probs = mixing_probs(logits)
    tail = ops.minimum(q, 1.0 - q)
    sign = None
    if family.symmetric:
        # A level above 1/2 is the negated (1 - q)-quantile of -Y, whose
        # components are these with the location negated: every level is then
        # found where the cdf is below 1/2 and float precision is relative, not
        # absolute near 1. (Arithmetic sign: no `where` for the export path.)
        sign = 1.0 - 2.0 * ops.cast(q > 0.5, q.dtype)
        parts = (parts[0] * sign[..., None, None], *parts[1:])
        q = tail
    loc = parts[0][..., 0]
    tail = tail[..., None, None]
    width = family.quantile_halfwidth(parts, tail)[..., 0]
    lo = reduce_min(loc - width, axis=-1) + ops.zeros_like(q)
    hi = reduce_max(loc + width, axis=-1) + ops.zeros_like(q)

    def body(_: int, bracket: tuple) -> tuple:
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = _marginal_cdf(family, probs, parts, mid[..., None], portable)[..., 0] < q
        return ops.where(below, mid, lo), ops.where(below, hi, mid)

    if portable:
        for step in range(num_iterations):
            lo, hi = body(step, (lo, hi))
    else:
        (lo, hi), _ = _until_settled(body, (lo, hi), num_iterations)
    # NaN where q is outside (0, 1) or NaN: log(q (1 - q)) is finite exactly
    # inside, so 0 * log(...) is 0 there and NaN elsewhere. (Arithmetic, not a
    # `where` with a NaN branch: tf2onnx lowers that to a product, NaN * 0.)
    mid = 0.5 * (lo + hi) if sign is None else sign * 0.5 * (lo + hi)
    return mid + 0.0 * ops.log(q * (1.0 - q))


def _until_settled(step: Any, state: tuple, num_iterations: int) -> tuple[tuple, Tensor]:
    """`(state, steps)` after up to `num_iterations` applications of
    `step(i, state)`, ending early once one changes nothing (NaN equal to NaN).

    `step` must not depend on `i`: a state it leaves unchanged is then left
    unchanged by every later step, so the result is that of all
    `num_iterations` steps (bit for bit, but for the sign of a zero or a
    NaN's payload, which `==` does not see). A float32 bisection settles (its
    brackets reach adjacent floats) after 45-57 halvings on random
    mixtures, instead of the 64 it may need; float64 needs all 64. `steps`
    (int32) counts the applications.
    """

    def cond(*loop: Tensor) -> Tensor:
        return ops.logical_not(loop[-1])

    def body(*loop: Tensor) -> tuple:
        old, steps = loop[:-2], loop[-2]
        new = step(0, old)
        settled = ops.convert_to_tensor(True)
        for n, o in zip(new, old, strict=True):
            same = ops.all((n == o) | (ops.isnan(n) & ops.isnan(o)))
            settled = ops.logical_and(settled, same)
        return (*new, steps + 1, settled)

    loop = (*state, ops.convert_to_tensor(0, dtype="int32"), ops.convert_to_tensor(False))
    out = ops.while_loop(cond, body, loop, maximum_iterations=num_iterations)
    return tuple(out[:-2]), out[-2]


@accepts_symbolic
def prediction_interval(
    params: Tensor,
    coverage: Union[float, Tensor],
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> tuple[Tensor, Tensor]:
    """The central `coverage` interval of a 1-D mixture.

    `lower = F^-1((1 - coverage) / 2)`, `upper = F^-1((1 + coverage) / 2)`,
    so `P(lower <= Y <= upper) = coverage` with equal mass left out on each
    side (see `mixture_quantile` for the tolerance and the derivative, here
    with respect to `params` and `coverage`).

    Args:
        params: `(..., params_size(1, num_mixtures, component))` flat MDN output with
            `output_dim == 1`.
        coverage: in `(0, 1)`, e.g. 0.9, shaped by the rule of
            `mixture_quantile`: a number or 0-d array/tensor, `(Q,)` (every
            coverage for every row) or `(Q, *params.shape[:-1])` (one per row).
            Python and NumPy values are checked; a tensor coverage outside
            `(0, 1)`, or NaN, gives NaN ends at its position.
        output_dim: must be 1.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(lower, upper)`, each of shape `params.shape[:-1]`, or
        `(Q, *params.shape[:-1])` for `Q` coverages.

    Raises:
        ValueError: if `output_dim != 1`, a Python-number or NumPy coverage
            is outside `(0, 1)`, or `coverage` has another shape.
    """
    _check_1d("prediction_interval", output_dim)
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    coverage = levels("coverage", coverage, params)
    # A coverage outside (0, 1) gives NaN, also where both of its levels would be valid.
    valid = ops.logical_and(coverage > 0, coverage < 1)
    coverage = ops.where(valid, coverage, ops.full_like(coverage, math.nan))
    if len(coverage.shape) == 0:
        coverage = ops.reshape(coverage, [1] * (len(params.shape) - 1))
    # Both ends in one bisection, along a new leading axis of size 2.
    q = ops.stack([0.5 * (1.0 - coverage), 0.5 * (1.0 + coverage)], axis=0)
    ends = _bisect_quantile(family, params, q, num_mixtures, DEFAULT_QUANTILE_ITERATIONS)
    return ends[0], ends[1]
