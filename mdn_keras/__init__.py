"""Mixture Density Network heads for Keras 3 (TensorFlow, JAX and PyTorch)."""

from mdn_keras import metrics, scores
from mdn_keras.density import component_log_prob, log_prob
from mdn_keras.distributions import to_distribution, to_tfp
from mdn_keras.families import FAMILIES, Family, get_family
from mdn_keras.generation import build_mdn_rnn, make_step_model, rollout
from mdn_keras.layer import MDN
from mdn_keras.loss import MDNLoss, mdn_nll
from mdn_keras.mixture import Mixture
from mdn_keras.params import join_params, params_size, scale_from_raw, split_params
from mdn_keras.portable import portable_cdf, portable_erfc, portable_quantile
from mdn_keras.sample_layer import MixtureSample
from mdn_keras.sampling import noise_size, sample, sample_from_noise
from mdn_keras.scores import crps, energy_score, pit
from mdn_keras.statistics import (
    marginal_cdf,
    mixture_cdf,
    mixture_covariance,
    mixture_mean,
    mixture_mode,
    mixture_quantile,
    mixture_stddev,
    mixture_variance,
    most_probable_component_mean,
    prediction_interval,
)
from mdn_keras.symbolic import MixtureFunction
from mdn_keras.version import __version__

__all__ = [
    "FAMILIES",
    "Family",
    "MDN",
    "MDNLoss",
    "Mixture",
    "MixtureSample",
    "MixtureFunction",
    "__version__",
    "build_mdn_rnn",
    "component_log_prob",
    "crps",
    "energy_score",
    "join_params",
    "get_family",
    "log_prob",
    "make_step_model",
    "marginal_cdf",
    "metrics",
    "mdn_nll",
    "mixture_cdf",
    "mixture_covariance",
    "mixture_mean",
    "mixture_mode",
    "mixture_quantile",
    "mixture_stddev",
    "mixture_variance",
    "most_probable_component_mean",
    "noise_size",
    "params_size",
    "pit",
    "portable_cdf",
    "portable_erfc",
    "portable_quantile",
    "prediction_interval",
    "rollout",
    "sample",
    "sample_from_noise",
    "scale_from_raw",
    "scores",
    "split_params",
    "to_distribution",
    "to_tfp",
]
