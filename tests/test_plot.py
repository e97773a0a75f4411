"""Plots, rendered with Agg and checked by what they drew."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.patches import Ellipse, Rectangle  # noqa: E402
from scipy import special, stats  # noqa: E402

import mdn_keras  # noqa: E402
from mdn_keras import plot  # noqa: E402
from reference import np_split, random_params  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def np_mixture(params, k):
    logits, loc, scale = np_split(params, 1, k)
    return special.softmax(logits, axis=-1), loc[..., 0], scale[..., 0]


def test_conditional_density_draws_the_mixture_density(rng):
    k, n = 3, 25
    params = random_params(rng, (n,), 1, k).astype(np.float64)
    x = np.linspace(-1, 1, n)
    y_grid = np.linspace(-6, 6, 40)
    ax = plot.plot_conditional_density(params, x, k, y_grid=y_grid, data=(x, x))
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    w, loc, scale = np_mixture(params, k)
    want = np.sum(w * stats.norm.pdf(y_grid[:, None, None], loc, scale), axis=-1)  # (M, N)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(want.shape), want, rtol=1e-4)
    assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-6.0, 6.0)
    assert len(ax.collections) == 2  # the heat map and the data points


def test_conditional_density_default_grid_spans_the_components(rng):
    k, n = 2, 10
    params = random_params(rng, (n,), 1, k).astype(np.float64)
    ax = plot.plot_conditional_density(params, np.arange(n), k, component="laplace", num_y=50)
    _, loc, scale = np_mixture(params, k)
    np.testing.assert_allclose(
        ax.get_ylim(), ((loc - 4 * scale).min(), (loc + 4 * scale).max()), rtol=1e-5
    )


def test_fan_chart_bands_are_the_prediction_intervals(rng):
    k, n = 3, 12
    params = random_params(rng, (n,), 1, k).astype(np.float64)
    index = np.arange(n) * 2.0
    fig, given = plt.subplots()
    ax = plot.plot_fan_chart(
        params, k, index=index, levels=(0.5, 0.9), y_true=np.zeros(n), ax=given
    )
    assert ax is given
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [b.get_label() for b in bands] == ["90%", "50%"]
    w, loc, scale = np_mixture(params, k)
    for band, level in zip(bands, (0.9, 0.5), strict=True):
        lower, upper = (
            np.array([ref_quantile(w[i], loc[i], scale[i], q) for i in range(n)])
            for q in ((1 - level) / 2, (1 + level) / 2)
        )
        vertices = band.get_paths()[0].vertices
        # fill_between's path: the upper edge then the lower edge, at the index.
        for xi, lo, hi in zip(index, lower, upper, strict=True):
            ys = vertices[np.isclose(vertices[:, 0], xi), 1]
            assert np.min(np.abs(ys - lo)) < 1e-4 and np.min(np.abs(ys - hi)) < 1e-4
    median = [line for line in ax.get_lines() if line.get_label() == "median"][0]
    want = [ref_quantile(w[i], loc[i], scale[i], 0.5) for i in range(n)]
    np.testing.assert_allclose(median.get_ydata(), want, atol=1e-4)
    np.testing.assert_array_equal(median.get_xdata(), index)


def ref_quantile(w, loc, scale, q):
    from scipy import optimize

    return optimize.brentq(lambda z: np.sum(w * stats.norm.cdf(z, loc, scale)) - q, -60, 60)


def test_pit_histogram_counts_and_binomial_band(rng):
    u = rng.uniform(size=500)
    ax = plot.plot_pit_histogram(u, bins=8, band=0.9)
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label() != "_nolegend_"]
    heights = [p.get_height() for p in ax.patches if isinstance(p, Rectangle)][-8:]
    want, _ = np.histogram(u, bins=8, range=(0, 1))
    np.testing.assert_array_equal(heights, want)
    assert bars
    lo, hi = stats.binom.ppf([0.05, 0.95], 500, 1 / 8)
    assert plot.binomial_band(500, 1 / 8, 0.9) == (lo, hi)
    span = [p for p in ax.patches if "band" in str(p.get_label())][0]
    ys = span.get_path().transformed(span.get_patch_transform()).vertices[:, 1]
    assert (ys.min(), ys.max()) == (lo, hi)
    expected = [line for line in ax.get_lines() if line.get_linestyle() == "--"][0]
    assert expected.get_ydata()[0] == 500 / 8
    assert ax.get_xlim() == (0.0, 1.0)


@pytest.mark.parametrize("n,p,c", [(50, 0.1, 0.95), (1000, 0.05, 0.99), (7, 0.5, 0.5)])
def test_binomial_band_matches_scipy(n, p, c):
    lo, hi = stats.binom.ppf([(1 - c) / 2, (1 + c) / 2], n, p)
    assert plot.binomial_band(n, p, c) == (lo, hi)


def test_reliability_draws_the_coverage_of_the_pit(rng):
    u = rng.beta(2, 2, size=300)  # a hump: intervals too wide
    levels = (0.2, 0.5, 0.8)
    ax = plot.plot_reliability(u, levels=levels, label="a")
    plot.plot_reliability(rng.uniform(size=300), levels=levels, ax=ax, label="b")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"ideal", "a", "b"}  # the diagonal drawn once
    want = [np.mean(np.abs(u - 0.5) <= c / 2) for c in levels]
    np.testing.assert_allclose(lines["a"].get_ydata(), want)
    np.testing.assert_allclose(lines["a"].get_xdata(), levels)
    assert np.all(lines["a"].get_ydata() > np.asarray(levels))
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)


def test_mixture_contours_draw_one_ellipse_per_component(rng):
    k = 3
    loc = rng.normal(0, 3, size=(k, 2))
    tril = np.array([[[1.0, 0.0], [0.8, 0.5]], [[0.4, 0.0], [-0.3, 1.2]], [[0.7, 0.0], [0.0, 0.7]]])
    logits = np.array([0.2, -0.5, 1.0])
    flat = mdn_keras.join_params(logits, loc, tril, component="mvn_tril")
    params = np.asarray(keras.ops.convert_to_numpy(flat), np.float64)
    ax = plot.plot_mixture_contours(params, k, n_std=2.0, grid_size=60)
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == k
    w = special.softmax(logits)
    for j, ellipse in enumerate(ellipses):
        cov = tril[j] @ tril[j].T
        values = np.linalg.eigvalsh(cov)
        np.testing.assert_allclose(ellipse.center, loc[j], rtol=1e-5)
        np.testing.assert_allclose(
            sorted([ellipse.width, ellipse.height]), 4.0 * np.sqrt(values), rtol=1e-5
        )
        # The major axis points along the leading eigenvector.
        major = np.linalg.eigh(cov)[1][:, -1]
        angle = np.radians(ellipse.angle)
        assert abs(abs(np.dot(major, [np.cos(angle), np.sin(angle)])) - 1) < 1e-6
        assert ellipse.get_linewidth() == pytest.approx(0.5 + 3.0 * w[j], rel=1e-5)
    # The contours are of the mixture density on the drawn grid: the levels
    # matplotlib chose bracket its range, the top level within one step of its maximum.
    levels = [c for c in ax.collections if hasattr(c, "levels")][0].levels
    gx, gy = np.linspace(*ax.get_xlim(), 60), np.linspace(*ax.get_ylim(), 60)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1)
    density = sum(
        w[j] * stats.multivariate_normal(loc[j], tril[j] @ tril[j].T).pdf(grid) for j in range(k)
    )
    step = levels[1] - levels[0]
    assert levels[0] <= density.min() and abs(levels[-1] - density.max()) < step


def test_plots_reject_bad_shapes(rng):
    params = random_params(rng, (5,), 2, 2)
    with pytest.raises(ValueError, match=r"params.shape=\(5, 10\)"):
        plot.plot_fan_chart(params, 2)  # a 2-D output
    one_d = random_params(rng, (5,), 1, 2)
    with pytest.raises(ValueError, match=r"index.shape=\(4,\)"):
        plot.plot_fan_chart(one_d, 2, index=np.arange(4))
    with pytest.raises(ValueError, match=r"x.shape=\(4,\)"):
        plot.plot_conditional_density(one_d, np.arange(4), 2)
    with pytest.raises(ValueError, match=r"params.shape=\(5, 15\)"):
        plot.plot_mixture_contours(random_params(rng, (5,), 2, 3), 3, component="normal")


def test_missing_matplotlib_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "mdn_keras\[plot\]"'):
        plot.plot_reliability(np.array([0.5]))


def test_fan_chart_sorts_the_rows_by_index(rng):
    k, n = 2, 9
    params = random_params(rng, (n,), 1, k).astype(np.float64)
    index = rng.permutation(n).astype(np.float64)
    y_true = rng.normal(size=n)
    ax = plot.plot_fan_chart(params, k, index=index, y_true=y_true)
    order = np.argsort(index)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["median"].get_xdata(), index[order])
    np.testing.assert_array_equal(lines["observed"].get_ydata(), y_true[order])
    w, loc, scale = np_mixture(params[order], k)
    want = [ref_quantile(w[i], loc[i], scale[i], 0.5) for i in range(n)]
    np.testing.assert_allclose(lines["median"].get_ydata(), want, atol=1e-4)


def test_the_package_and_plot_import_without_matplotlib():
    # Keras itself imports matplotlib when it is installed, so block it outright.
    import os
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['matplotlib'] = sys.modules['matplotlib.pyplot'] = None\n"
        "import numpy, mdn_keras, mdn_keras.plot\n"
        "try:\n"
        "    mdn_keras.plot.plot_pit_histogram(numpy.array([0.5]))\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=dict(os.environ), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (
        'ImportError: mdn_keras.plot needs matplotlib: pip install "mdn_keras[plot]"' in out.stdout
    )
