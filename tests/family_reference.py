"""Float64 NumPy/SciPy references for every component family, written
independently of the package: explicit layouts, scipy.stats densities and
distributions, loops over components."""

import numpy as np
from scipy import special, stats

FAMILY_NAMES = ("normal", "laplace", "student_t", "mvn_tril")


def tril_size(d):
    return d * (d + 1) // 2


def np_params_size(name, d, k):
    per = {"normal": 2 * d, "laplace": 2 * d, "student_t": 3 * d, "mvn_tril": d + tril_size(d)}
    return k * (per[name] + 1)


def np_family_split(params, d, k, name):
    """`(logits, parts)` in float64, parts as in `mdn_keras.split_params`."""
    params = np.asarray(params, dtype=np.float64)
    lead = params.shape[:-1]
    loc = params[..., : k * d].reshape(*lead, k, d)
    rest = params[..., k * d :]
    if name == "mvn_tril":
        t = tril_size(d)
        flat = rest[..., : k * t].reshape(*lead, k, t)
        tril = np.zeros((*lead, k, d, d))
        rows, cols = np.tril_indices(d)  # row by row: (0,0), (1,0), (1,1), ...
        tril[..., rows, cols] = flat
        return rest[..., k * t :], (loc, tril)
    n_more = 2 if name == "student_t" else 1
    more = [rest[..., i * k * d : (i + 1) * k * d].reshape(*lead, k, d) for i in range(n_more)]
    return rest[..., n_more * k * d :], (loc, *more)


def random_family_params(rng, lead, d, k, name, dtype=np.float32, df_range=(1.5, 8.0)):
    """Valid flat params: loc ~ N(0, 2), scales in [0.3, 1.5], logits ~ N(0, 1),
    df in `df_range`, off-diagonal scale_tril entries ~ N(0, 0.5)."""
    loc = rng.normal(0, 2, size=(*lead, k * d))
    logits = rng.normal(0, 1, size=(*lead, k))
    if name == "mvn_tril":
        rows, cols = np.tril_indices(d)
        tril = np.where(
            rows == cols,
            rng.uniform(0.3, 1.5, size=(*lead, k, tril_size(d))),
            rng.normal(0, 0.5, size=(*lead, k, tril_size(d))),
        ).reshape(*lead, k * tril_size(d))
        blocks = [loc, tril]
    else:
        blocks = [loc, rng.uniform(0.3, 1.5, size=(*lead, k * d))]
        if name == "student_t":
            blocks.append(rng.uniform(*df_range, size=(*lead, k * d)))
    return np.concatenate([*blocks, logits], axis=-1).astype(dtype)


def np_component_logpdf(name, parts, y, idx, j):
    """log p_j(y[idx]) for component j of row idx, with scipy."""
    if name == "mvn_tril":
        loc, tril = parts
        cov = tril[idx][j] @ tril[idx][j].T
        return stats.multivariate_normal(loc[idx][j], cov).logpdf(y[idx])
    loc, scale = parts[0][idx][j], parts[1][idx][j]
    if name == "normal":
        return stats.norm.logpdf(y[idx], loc, scale).sum()
    if name == "laplace":
        return stats.laplace.logpdf(y[idx], loc, scale).sum()
    return stats.t.logpdf(y[idx], parts[2][idx][j], loc, scale).sum()


def np_family_log_prob(params, y, d, k, name):
    logits, parts = np_family_split(params, d, k, name)
    y = np.broadcast_to(np.asarray(y, np.float64), (*logits.shape[:-1], d))
    log_pi = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    out = np.empty(logits.shape[:-1])
    for idx in np.ndindex(*logits.shape[:-1]):
        terms = [log_pi[idx][j] + np_component_logpdf(name, parts, y, idx, j) for j in range(k)]
        out[idx] = special.logsumexp(terms)
    return out


def np_log_prob_points(row, ys, d, k, name):
    """log p(y) of many points `ys` `(N, D)` under ONE mixture `row` (vectorised)."""
    logits, parts = np_family_split(row, d, k, name)
    ys = np.asarray(ys, np.float64).reshape(-1, d)
    log_pi = logits - special.logsumexp(logits)
    terms = []
    for j in range(k):
        if name == "mvn_tril":
            cov = parts[1][j] @ parts[1][j].T
            logpdf = stats.multivariate_normal(parts[0][j], cov).logpdf(ys).reshape(-1)
        elif name == "normal":
            logpdf = stats.norm.logpdf(ys, parts[0][j], parts[1][j]).sum(-1)
        elif name == "laplace":
            logpdf = stats.laplace.logpdf(ys, parts[0][j], parts[1][j]).sum(-1)
        else:
            logpdf = stats.t.logpdf(ys, parts[2][j], parts[0][j], parts[1][j]).sum(-1)
        terms.append(log_pi[j] + logpdf)
    return special.logsumexp(np.stack(terms), axis=0)


def np_component_moments(name, parts):
    """Component means `(..., K, D)` and covariances `(..., K, D, D)`."""
    loc = parts[0]
    if name == "mvn_tril":
        tril = parts[1]
        return loc, tril @ np.swapaxes(tril, -1, -2)
    scale = parts[1]
    if name == "normal":
        var = scale**2
    elif name == "laplace":
        var = 2 * scale**2
    else:
        df = parts[2]
        var = scale**2 * df / (df - 2)
    return loc, var[..., None] * np.eye(loc.shape[-1])


def np_mixture_moments(params, d, k, name):
    """Mixture mean `(..., D)` and covariance `(..., D, D)` (law of total covariance)."""
    logits, parts = np_family_split(params, d, k, name)
    pi = special.softmax(logits, axis=-1)
    means, covs = np_component_moments(name, parts)
    mean = np.einsum("...k,...kd->...d", pi, means)
    centred = means - mean[..., None, :]
    between = np.einsum("...ki,...kj->...kij", centred, centred)
    cov = np.einsum("...k,...kij->...ij", pi, covs + between)
    return mean, cov


def np_marginal_cdf_1d(name, parts, x, idx, j):
    """Marginal cdf of dimension 0 of component j of row idx at x."""
    loc = parts[0][idx][j][0]
    if name == "mvn_tril":
        sd = np.sqrt((parts[1][idx][j][0] ** 2).sum())
        return stats.norm.cdf(x, loc, sd)
    scale = parts[1][idx][j][0]
    if name == "normal":
        return stats.norm.cdf(x, loc, scale)
    if name == "laplace":
        return stats.laplace.cdf(x, loc, scale)
    return stats.t.cdf(x, parts[2][idx][j][0], loc, scale)


def np_mixture_cdf_1d(params, x, k, name, idx=()):
    logits, parts = np_family_split(params, 1, k, name)
    pi = special.softmax(logits[idx], axis=-1)
    return sum(pi[j] * np_marginal_cdf_1d(name, parts, x, idx, j) for j in range(k))
