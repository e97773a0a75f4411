"""Distribution objects for the mixture an MDN head predicts.

`to_tfp` builds a TensorFlow Probability `MixtureSameFamily` whose components
are the family's TFP twin (`MultivariateNormalDiag`, `Independent(Laplace)`,
`Independent(StudentT)`, `MultivariateNormalTriL`); `to_distribution` returns
the backend's native object (TFP on TensorFlow and JAX, `torch.distributions`
on PyTorch).

TensorFlow Probability is optional (`pip install "mdn_keras[tfp]"`) and is
imported only when `to_tfp` or `to_distribution` needs it, so `import mdn_keras`
never loads it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import keras
from keras import ops

from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import split_params
from mdn_keras.types import Tensor

_TFP_EXTRA = 'pip install "mdn_keras[tfp]"'
_TF_TFP_EXTRA = 'pip install "mdn_keras[tensorflow,tfp]"'


def _tfp_distributions(backend: str) -> ModuleType:
    """`tfp.distributions` of the TFP substrate that matches the Keras backend."""
    tfp_error = tf_keras_error = None
    try:
        import tensorflow_probability  # noqa: F401
    except ImportError as error:
        tfp_error = error
    if backend == "tensorflow":
        # TFP's TensorFlow path refuses to import without tf_keras under Keras 3.
        try:
            import tf_keras  # noqa: F401
        except ImportError as error:
            tf_keras_error = error
    if tf_keras_error is not None:
        raise ImportError(
            "TensorFlow Probability on the TensorFlow backend requires the "
            "`tf_keras` package as well as TensorFlow Probability itself. "
            f"Install them with: {_TF_TFP_EXTRA}"
        ) from tf_keras_error
    if tfp_error is not None:
        raise ImportError(
            "Converting MDN parameters to a TensorFlow Probability distribution "
            f"requires TensorFlow Probability. Install it with: {_TFP_EXTRA}"
        ) from tfp_error
    if backend == "tensorflow":
        import tensorflow_probability as tfp

        return tfp.distributions
    if backend == "jax":
        try:
            from tensorflow_probability.substrates import jax as tfp_jax
        except Exception as error:  # e.g. AttributeError from an old TFP on new JAX
            raise ImportError(
                "TensorFlow Probability's JAX substrate failed to import "
                f"({type(error).__name__}: {error}). The released "
                "tensorflow-probability 0.25.0 does not work with jax>=0.7; "
                f"install the nightly with: {_TFP_EXTRA}"
            ) from error
        return tfp_jax.distributions
    from tensorflow_probability.substrates import numpy as tfp_numpy

    return tfp_numpy.distributions


def to_tfp(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Any:
    """The mixture in `params` as a TFP `MixtureSameFamily` distribution.

    Builds

        tfd.MixtureSameFamily(
            tfd.Categorical(logits=logits),
            tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale))

    for the default `"normal"` family, and the family's TFP twin otherwise
    (`Independent(Laplace)`, `Independent(StudentT)`, `MultivariateNormalTriL`),
    with `batch_shape == params.shape[:-1]` and `event_shape == (output_dim,)`.
    The TFP substrate follows the Keras backend:

    * TensorFlow: `tensorflow_probability.distributions`, on the same tensors
      (differentiable with `tf.GradientTape`). Needs `tf_keras`
      (`pip install "mdn_keras[tensorflow,tfp]"`).
    * JAX: `tensorflow_probability.substrates.jax.distributions`, on the same
      arrays; works inside `jax.jit` and `jax.grad`.
    * PyTorch: TFP has no PyTorch substrate, so the object is built with
      `tensorflow_probability.substrates.numpy` on host NumPy copies of the
      parameters. It is detached from the autograd graph and lives on the CPU;
      use `to_distribution` for a differentiable, on-device object.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        A `MixtureSameFamily` distribution.

    Raises:
        ImportError: if TensorFlow Probability (or, on the TensorFlow backend,
            `tf_keras`) is not installed; the message names the pip extra.
        ValueError: if `params` has the wrong last axis or is not floating-point.
    """
    family = get_family(component)
    logits, *parts = split_params(params, output_dim, num_mixtures, family)
    backend = keras.backend.backend()
    tfd = _tfp_distributions(backend)
    if backend not in ("tensorflow", "jax"):
        logits, *parts = (ops.convert_to_numpy(t) for t in (logits, *parts))
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=family.tfp(tfd, tuple(parts)),
    )


def to_distribution(
    params: Tensor, output_dim: int, num_mixtures: int, component: ComponentLike = "normal"
) -> Any:
    """The mixture in `params` as the active backend's native distribution object.

    * TensorFlow and JAX: the TFP object of `to_tfp` (needs
      `pip install "mdn_keras[tfp]"`).
    * PyTorch:

          torch.distributions.MixtureSameFamily(
              Categorical(logits=logits),
              Independent(Normal(loc, scale), 1))

      for `"normal"`, and `Independent(Laplace)`, `Independent(StudentT)` or
      `MultivariateNormal(loc, scale_tril=...)` for the other families, on
      the tensors' device, differentiable: gradients of its `log_prob` flow
      back to the weights that produced `params`. No TFP needed.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        A distribution with batch shape `params.shape[:-1]` and event shape
        `(output_dim,)`.
    """
    if keras.backend.backend() != "torch":
        return to_tfp(params, output_dim, num_mixtures, component)
    import torch.distributions as td

    family = get_family(component)
    logits, *parts = split_params(params, output_dim, num_mixtures, family)
    return td.MixtureSameFamily(td.Categorical(logits=logits), family.torch(td, tuple(parts)))
