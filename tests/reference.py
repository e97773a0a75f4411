"""Float64 NumPy/SciPy references for the mixture math, written independently
of the package (explicit loops over components, scipy's multivariate normal)."""

import keras
import numpy as np
from scipy import special, stats


def as_float64(a):
    """A float64 NumPy copy of a number, an array or a backend tensor on any device."""
    if not isinstance(a, (np.ndarray, np.generic, float, int, list, tuple)):
        a = keras.ops.convert_to_numpy(a)
    return np.asarray(a, dtype=np.float64)


def np_split(params, d, k):
    params = as_float64(params)
    lead = params.shape[:-1]
    loc = params[..., : k * d].reshape(*lead, k, d)
    scale = params[..., k * d : 2 * k * d].reshape(*lead, k, d)
    logits = params[..., 2 * k * d :]
    return logits, loc, scale


def np_log_prob(params, y, d, k):
    """log p(y) = log sum_k pi_k N(y; mu_k, diag(s_k^2)), via scipy per row."""
    logits, loc, scale = np_split(params, d, k)
    y = np.broadcast_to(np.asarray(y, np.float64), (*logits.shape[:-1], d))
    log_pi = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    out = np.empty(logits.shape[:-1])
    for idx in np.ndindex(*logits.shape[:-1]):
        terms = [
            log_pi[idx][j]
            + stats.multivariate_normal(loc[idx][j], np.diag(scale[idx][j] ** 2)).logpdf(y[idx])
            for j in range(k)
        ]
        out[idx] = special.logsumexp(terms)
    return out


def random_params(rng, lead, d, k, dtype=np.float32):
    """Valid flat params: loc ~ N(0, 2), scale in [0.2, 1.5], logits ~ N(0, 1)."""
    loc = rng.normal(0, 2, size=(*lead, k * d))
    scale = rng.uniform(0.2, 1.5, size=(*lead, k * d))
    logits = rng.normal(0, 1, size=(*lead, k))
    return np.concatenate([loc, scale, logits], axis=-1).astype(dtype)
