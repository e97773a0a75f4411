"""`Mixture`: MDN parameters bundled with their `output_dim` and `num_mixtures`."""

from __future__ import annotations

from typing import Any, Union

import keras

from mdn_keras import distributions, statistics
from mdn_keras.density import log_prob
from mdn_keras.params import check_params, split_params
from mdn_keras.sampling import sample
from mdn_keras.types import Seed, Shape, Tensor


class Mixture:
    """The Gaussian mixture in a flat MDN output, so `D` and `K` are given once.

    A light value object over the functional API: every method calls the
    matching `mdn_keras` function with this object's `params`, `output_dim`
    and `num_mixtures`. It holds no state besides those three and works on
    any backend and inside `jax.jit`.

    Args:
        params: `(..., num_mixtures * (2 * output_dim + 1))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.

    Example:

    >>> mix = mdn_keras.Mixture(model(x), output_dim=1, num_mixtures=5)
    >>> mix.mean(), mix.mode(), mix.interval(0.9)
    """

    def __init__(self, params: Tensor, output_dim: int, num_mixtures: int) -> None:
        self.params = check_params(params, output_dim, num_mixtures)
        self.output_dim = output_dim
        self.num_mixtures = num_mixtures

    def __repr__(self) -> str:
        return (
            f"Mixture(batch_shape={self.batch_shape}, output_dim={self.output_dim}, "
            f"num_mixtures={self.num_mixtures}, "
            f"dtype={keras.backend.standardize_dtype(self.params.dtype)})"
        )

    @property
    def logits(self) -> Tensor:
        """`(..., K)` mixing logits."""
        return split_params(self.params, self.output_dim, self.num_mixtures)[0]

    @property
    def probs(self) -> Tensor:
        """`(..., K)` mixing weights, `softmax(logits)`."""
        return statistics.mixing_probs(self.logits)

    @property
    def loc(self) -> Tensor:
        """`(..., K, D)` component means."""
        return split_params(self.params, self.output_dim, self.num_mixtures)[1]

    @property
    def scale(self) -> Tensor:
        """`(..., K, D)` component standard deviations."""
        return split_params(self.params, self.output_dim, self.num_mixtures)[2]

    @property
    def batch_shape(self) -> Shape:
        """`params.shape[:-1]`, static (entries may be None)."""
        return tuple(self.params.shape[:-1])

    @property
    def event_shape(self) -> Shape:
        """`(output_dim,)`."""
        return (self.output_dim,)

    def log_prob(self, y: Tensor) -> Tensor:
        """`(...)` log-density of `(..., D)` targets; see `mdn_keras.log_prob`."""
        return log_prob(self.params, y, self.output_dim, self.num_mixtures)

    def sample(
        self,
        *,
        temperature: Union[float, Tensor] = 1.0,
        sigma_temperature: Union[float, Tensor] = 1.0,
        seed: Seed = None,
    ) -> Tensor:
        """One `(..., D)` draw per batch entry; see `mdn_keras.sample`."""
        return sample(
            self.params,
            self.output_dim,
            self.num_mixtures,
            temperature=temperature,
            sigma_temperature=sigma_temperature,
            seed=seed,
        )

    def mean(self) -> Tensor:
        """`(..., D)`; see `mdn_keras.mixture_mean`."""
        return statistics.mixture_mean(self.params, self.output_dim, self.num_mixtures)

    def variance(self) -> Tensor:
        """`(..., D)` per-dimension variance; see `mdn_keras.mixture_variance`."""
        return statistics.mixture_variance(self.params, self.output_dim, self.num_mixtures)

    def stddev(self) -> Tensor:
        """`(..., D)`; see `mdn_keras.mixture_stddev`."""
        return statistics.mixture_stddev(self.params, self.output_dim, self.num_mixtures)

    def mode(self, **kwargs: Any) -> Tensor:
        """`(..., D)` highest-density point; see `mdn_keras.mixture_mode`."""
        return statistics.mixture_mode(self.params, self.output_dim, self.num_mixtures, **kwargs)

    def most_probable_component_mean(self) -> Tensor:
        """`(..., D)` mean of the heaviest component."""
        return statistics.most_probable_component_mean(
            self.params, self.output_dim, self.num_mixtures
        )

    def cdf(self, y: Tensor) -> Tensor:
        """`(...)` `P(Y <= y)`, for `output_dim == 1`; see `mdn_keras.mixture_cdf`."""
        return statistics.mixture_cdf(self.params, y, self.output_dim, self.num_mixtures)

    def quantile(self, q: Union[float, Tensor], **kwargs: Any) -> Tensor:
        """`F^-1(q)`, for `output_dim == 1`; see `mdn_keras.mixture_quantile`."""
        return statistics.mixture_quantile(
            self.params, q, self.output_dim, self.num_mixtures, **kwargs
        )

    def interval(self, coverage: Union[float, Tensor]) -> tuple[Tensor, Tensor]:
        """Central `(lower, upper)` interval; see `mdn_keras.prediction_interval`."""
        return statistics.prediction_interval(
            self.params, coverage, self.output_dim, self.num_mixtures
        )

    def to_tfp(self) -> Any:
        """A TFP `MixtureSameFamily`; see `mdn_keras.to_tfp`."""
        return distributions.to_tfp(self.params, self.output_dim, self.num_mixtures)

    def to_distribution(self) -> Any:
        """The backend's native distribution; see `mdn_keras.to_distribution`."""
        return distributions.to_distribution(self.params, self.output_dim, self.num_mixtures)
