"""Mixture Density Network heads for Keras 3 (TensorFlow, JAX and PyTorch)."""

from mdn_keras.density import component_log_prob, log_prob
from mdn_keras.layer import MDN
from mdn_keras.loss import MDNLoss, mdn_nll
from mdn_keras.params import join_params, params_size, scale_from_raw, split_params
from mdn_keras.sampling import sample
from mdn_keras.version import __version__

__all__ = [
    "MDN",
    "MDNLoss",
    "__version__",
    "component_log_prob",
    "join_params",
    "log_prob",
    "mdn_nll",
    "params_size",
    "sample",
    "scale_from_raw",
    "split_params",
]
