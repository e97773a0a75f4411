"""Pictures of predicted mixtures and of their calibration (matplotlib, extra `[plot]`).

Every function draws on the `ax` it is given, or on a new figure's axes,
and returns the axes:

* `plot_conditional_density`: `p(y | x)` of a 1-D output over a 1-D input
  as a heat map (Bishop's figure of the inverse problem).
* `plot_fan_chart`: central quantile bands and the median along an index
  (a time axis, or sorted inputs).
* `plot_pit_histogram`: the histogram of PIT values with the band a
  uniform histogram stays in with the given probability (per bin).
* `plot_reliability`: nominal vs empirical coverage of central intervals.
* `plot_mixture_contours`: density contours of a 2-D mixture with one
  covariance ellipse per component (for `"mvn_tril"`, the correlations).

matplotlib is imported when a function is called; without it an
`ImportError` says to `pip install "mdn_keras[plot]"`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from keras import ops

from mdn_keras.density import log_prob
from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import split_params
from mdn_keras.statistics import mixture_quantile, prediction_interval
from mdn_keras.types import Tensor

DEFAULT_FAN_LEVELS = (0.5, 0.8, 0.95)
DEFAULT_RELIABILITY_LEVELS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on what is installed
        raise ImportError(
            'mdn_keras.plot needs matplotlib: pip install "mdn_keras[plot]"'
        ) from error
    return plt


def _axes(ax: Any) -> Any:
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _np(x: Tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _check_rows(name: str, params: np.ndarray, index: np.ndarray, index_name: str) -> None:
    if params.ndim != 2 or index.shape != (params.shape[0],):
        raise ValueError(
            f"`{name}` expects params of shape (N, P) and {index_name} of shape (N,). "
            f"Received: params.shape={params.shape}, {index_name}.shape={index.shape}"
        )


def plot_conditional_density(
    params: Tensor,
    x: Tensor,
    num_mixtures: int,
    component: ComponentLike = "normal",
    y_grid: Optional[Tensor] = None,
    num_y: int = 200,
    data: Optional[tuple] = None,
    ax: Any = None,
    cmap: str = "viridis",
    **mesh_kwargs: Any,
) -> Any:
    """Heat map of `p(y | x)` for a 1-D output over a 1-D input.

    Args:
        params: `(N, params_size(1, num_mixtures, component))`, the mixture at each input.
        x: `(N,)` the inputs, increasing (e.g. a grid the model was run on).
        num_mixtures: `K`.
        component: the component family.
        y_grid: `(M,)` increasing output values; by default `num_y` points
            spanning every component's location +- 4 spreads.
        num_y: grid size when `y_grid` is None.
        data: optional `(x_data, y_data)` drawn as points on top.
        ax: axes to draw on; a new figure's when None.
        cmap: colour map of the density.
        **mesh_kwargs: passed to `ax.pcolormesh`, e.g.
            `norm=matplotlib.colors.PowerNorm(0.4)` to see wide components
            beside a sharp one.

    Returns:
        The axes, with one `QuadMesh` whose array is the `(M, N)` density.
    """
    ax = _axes(ax)
    family = get_family(component)
    p, x = _np(params), _np(x)
    _check_rows("plot_conditional_density", p, x, "x")
    if y_grid is None:
        _, loc, *rest = split_params(p, 1, num_mixtures, family)
        spread = _np(family.spread(tuple(ops.convert_to_tensor(r) for r in (loc, *rest))))
        loc = _np(loc)
        y_grid = np.linspace(np.min(loc - 4 * spread), np.max(loc + 4 * spread), num_y)
    y_grid = _np(y_grid)
    density = np.exp(_np(log_prob(p, y_grid[:, None, None], 1, num_mixtures, family)))  # (M, N)
    mesh = ax.pcolormesh(x, y_grid, density, shading="nearest", cmap=cmap, **mesh_kwargs)
    if data is not None:
        ax.scatter(_np(data[0]), _np(data[1]), s=6, c="white", edgecolors="black", linewidths=0.3)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y_grid[0], y_grid[-1])
    ax.figure.colorbar(mesh, ax=ax, label="p(y | x)")
    return ax


def plot_fan_chart(
    params: Tensor,
    num_mixtures: int,
    index: Optional[Tensor] = None,
    levels: Sequence[float] = DEFAULT_FAN_LEVELS,
    component: ComponentLike = "normal",
    y_true: Optional[Tensor] = None,
    ax: Any = None,
    color: str = "C0",
) -> Any:
    """Central quantile bands of a 1-D output along an index, with the median.

    Band `c` spans `[F^-1((1 - c) / 2), F^-1((1 + c) / 2)]` at each index
    (`mdn_keras.prediction_interval`), wider bands lighter.

    Args:
        params: `(N, params_size(1, num_mixtures, component))`.
        num_mixtures: `K`.
        index: `(N,)` positions along the horizontal axis; `0..N-1` by default.
            The rows are drawn in the order of `index` (sorted, stably).
        levels: coverages of the bands, each in `(0, 1)`.
        component: the component family.
        y_true: optional `(N,)` observations, drawn as points.
        ax: axes to draw on; a new figure's when None.
        color: colour of the bands and the median.

    Returns:
        The axes: one `fill_between` band per level (widest first, labelled
        `"{level:.0%}"`) and the median line (labelled `"median"`).
    """
    ax = _axes(ax)
    family = get_family(component)
    p = _np(params)
    index = np.arange(p.shape[0], dtype=np.float64) if index is None else _np(index)
    _check_rows("plot_fan_chart", p, index, "index")
    order = np.argsort(index, kind="stable")  # bands drawn left to right
    p, index = p[order], index[order]
    levels = sorted((float(c) for c in levels), reverse=True)
    for i, level in enumerate(levels):
        lower, upper = prediction_interval(p, level, 1, num_mixtures, component=family)
        alpha = 0.15 + 0.5 * i / max(len(levels), 1)
        ax.fill_between(
            index, _np(lower), _np(upper), color=color, alpha=alpha, lw=0, label=f"{level:.0%}"
        )
    median = _np(mixture_quantile(p, 0.5, 1, num_mixtures, component=family))
    ax.plot(index, median, color=color, lw=1.5, label="median")
    if y_true is not None:
        ax.plot(index, _np(y_true).reshape(-1)[order], "k.", ms=3, label="observed")
    ax.legend(loc="best", fontsize="small")
    return ax


def binomial_band(n: int, p: float, probability: float) -> tuple[int, int]:
    """`(lo, hi)`: the central `probability` interval of `Binomial(n, p)` (exact quantiles).

    `lo` is the smallest `k` with `P(X <= k) >= (1 - probability) / 2`, `hi`
    the smallest with `P(X <= k) >= (1 + probability) / 2` (as
    `scipy.stats.binom.ppf`).
    """
    targets = (0.5 * (1.0 - probability), 0.5 * (1.0 + probability))
    log_p, log_q = math.log(p), math.log1p(-p)
    cdf = 0.0
    ends: list[int] = []
    for k in range(n + 1):
        log_pmf = (
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * log_p
            + (n - k) * log_q
        )
        cdf += math.exp(log_pmf)
        while len(ends) < 2 and cdf >= targets[len(ends)] * (1 - 1e-12):
            ends.append(k)
        if len(ends) == 2:
            break
    while len(ends) < 2:
        ends.append(n)
    return ends[0], ends[1]


def plot_pit_histogram(
    pit_values: Tensor,
    bins: int = 10,
    band: float = 0.95,
    ax: Any = None,
    color: str = "C0",
) -> Any:
    """Histogram of PIT values with the band of a uniform histogram.

    A calibrated model's PIT values are uniform on `(0, 1)`: each of the
    `bins` counts is `Binomial(n, 1 / bins)`. The shaded band is its central
    `band` interval (exact binomial quantiles, per bin, not simultaneous);
    the dashed line the expected count `n / bins`. A U shape means too
    narrow predictions, a hump too wide ones, a slope a biased location.

    Args:
        pit_values: any shape (flattened), e.g. `mdn_keras.pit(...)`.
        bins: number of equal bins on `[0, 1]`.
        band: probability of the band, in `(0, 1)`.
        ax: axes to draw on; a new figure's when None.
        color: colour of the bars.

    Returns:
        The axes: `bins` bars (counts), the band (`axhspan`), the expected line.
    """
    ax = _axes(ax)
    u = _np(pit_values).reshape(-1)
    n = u.size
    counts, edges = np.histogram(u, bins=bins, range=(0.0, 1.0))
    lo, hi = binomial_band(n, 1.0 / bins, band)
    ax.axhspan(lo, hi, color="0.85", zorder=0, label=f"{band:.0%} band of a uniform histogram")
    ax.bar(
        edges[:-1],
        counts,
        width=np.diff(edges),
        align="edge",
        color=color,
        alpha=0.8,
        edgecolor="white",
        label="PIT",
    )
    ax.axhline(n / bins, color="0.3", ls="--", lw=1)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("PIT")
    ax.set_ylabel("count")
    ax.legend(loc="best", fontsize="small")
    return ax


def empirical_coverage(pit_values: Tensor, levels: Sequence[float]) -> np.ndarray:
    """Fraction of PIT values inside each central interval: `mean(|u - 1/2| <= c / 2)`."""
    u = _np(pit_values).reshape(-1)
    return np.asarray([np.mean(np.abs(u - 0.5) <= 0.5 * c) for c in levels])


def plot_reliability(
    pit_values: Tensor,
    levels: Sequence[float] = DEFAULT_RELIABILITY_LEVELS,
    ax: Any = None,
    label: str = "model",
    color: str = "C0",
) -> Any:
    """Reliability diagram: nominal vs empirical coverage of central intervals.

    `y` lies in the central `c` interval of its predictive distribution
    exactly when its PIT `u` has `|u - 1/2| <= c / 2`, so the empirical
    coverage at each level is read off the PIT values. A calibrated model
    lies on the diagonal; below it, intervals are too narrow. Call it again
    on the same `ax` to compare models.

    Args:
        pit_values: any shape (flattened), e.g. `mdn_keras.pit(...)`.
        levels: nominal coverages in `(0, 1)`.
        ax: axes to draw on; a new figure's when None.
        label, color: of the model's line.

    Returns:
        The axes: the diagonal (labelled `"ideal"`, drawn once) and a line
        with markers at `(levels, empirical_coverage(pit_values, levels))`.
    """
    ax = _axes(ax)
    levels = [float(c) for c in levels]
    if not any(line.get_label() == "ideal" for line in ax.get_lines()):
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="ideal")
    ax.plot(levels, empirical_coverage(pit_values, levels), "o-", color=color, ms=3, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.legend(loc="best", fontsize="small")
    return ax


def covariance_ellipse(mean: np.ndarray, cov: np.ndarray, n_std: float) -> tuple:
    """`(center, width, height, angle_degrees)` of the `n_std` ellipse of a 2x2 covariance."""
    values, vectors = np.linalg.eigh(cov)  # ascending
    width, height = 2.0 * n_std * np.sqrt(values[::-1])
    angle = math.degrees(math.atan2(vectors[1, -1], vectors[0, -1]))
    return (float(mean[0]), float(mean[1])), float(width), float(height), angle


def plot_mixture_contours(
    params: Tensor,
    num_mixtures: int,
    component: ComponentLike = "mvn_tril",
    n_std: float = 2.0,
    grid_size: int = 120,
    levels: int = 8,
    ax: Any = None,
    cmap: str = "Blues",
) -> Any:
    """Density contours of one 2-D mixture, with one covariance ellipse per component.

    Args:
        params: `(params_size(2, num_mixtures, component),)`: one mixture, `D = 2`.
        num_mixtures: `K`.
        component: the component family (`"mvn_tril"` by default: its
            ellipses are tilted by the correlations; diagonal families give
            axis-aligned ones).
        n_std: the ellipses are `n_std` standard deviations wide along
            their principal axes (the family's `covariance`).
        grid_size: points per axis of the density grid, which spans every
            component's location +- `n_std + 1` standard deviations.
        levels: number of contour levels.
        ax: axes to draw on; a new figure's when None.
        cmap: colour map of the contours.

    Returns:
        The axes, with the contour set and `K` `matplotlib.patches.Ellipse`
        patches (line width proportional to the mixing weight).
    """
    from matplotlib.patches import Ellipse

    ax = _axes(ax)
    family = get_family(component)
    p = _np(params)
    if p.ndim != 1:
        raise ValueError(
            "`plot_mixture_contours` draws one mixture: expected params of shape (P,). "
            f"Received: params.shape={p.shape}"
        )
    logits, *parts = split_params(p, 2, num_mixtures, family)
    cov = _np(family.covariance(tuple(parts)))  # (K, 2, 2)
    loc = _np(parts[0])
    weights = np.exp(_np(logits) - np.max(_np(logits)))
    weights /= weights.sum()
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    reach = (n_std + 1.0) * sd
    lo, hi = np.min(loc - reach, axis=0), np.max(loc + reach, axis=0)
    gx, gy = np.linspace(lo[0], hi[0], grid_size), np.linspace(lo[1], hi[1], grid_size)
    mesh = np.stack(np.meshgrid(gx, gy), axis=-1)  # (G, G, 2)
    density = np.exp(_np(log_prob(p, mesh, 2, num_mixtures, family)))
    ax.contour(gx, gy, density, levels=levels, cmap=cmap)
    for k in range(num_mixtures):
        center, width, height, angle = covariance_ellipse(loc[k], cov[k], n_std)
        ax.add_patch(
            Ellipse(
                center,
                width,
                height,
                angle=angle,
                fill=False,
                color=f"C{k % 10}",
                lw=0.5 + 3.0 * weights[k],
                label=f"component {k} (w={weights[k]:.2f})",
            )
        )
        ax.plot(*center, "+", color=f"C{k % 10}")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    return ax


__all__ = [
    "binomial_band",
    "covariance_ellipse",
    "empirical_coverage",
    "plot_conditional_density",
    "plot_fan_chart",
    "plot_mixture_contours",
    "plot_pit_histogram",
    "plot_reliability",
]
