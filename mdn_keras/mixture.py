"""`Mixture`: MDN parameters bundled with their `output_dim`, `num_mixtures` and family."""

from __future__ import annotations

from typing import Any, Union

import keras

from mdn_keras import distributions, statistics
from mdn_keras.density import log_prob
from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import check_params, split_params
from mdn_keras.sampling import sample
from mdn_keras.types import Seed, Shape, Tensor


class Mixture:
    """The mixture in a flat MDN output, so `D`, `K` and the family are given once.

    A light value object over the functional API: every method calls the
    matching `mdn_keras` function with this object's `params`, `output_dim`,
    `num_mixtures` and `component`. It holds no state besides those four and
    works on any backend and inside `jax.jit`.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Example:

    >>> mix = mdn_keras.Mixture(model(x), output_dim=1, num_mixtures=5)
    >>> mix.mean(), mix.mode(), mix.interval(0.9)
    """

    def __init__(
        self,
        params: Tensor,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
    ) -> None:
        self.component = get_family(component)
        self.params = check_params(params, output_dim, num_mixtures, self.component)
        self.output_dim = output_dim
        self.num_mixtures = num_mixtures

    def __repr__(self) -> str:
        return (
            f"Mixture(batch_shape={self.batch_shape}, output_dim={self.output_dim}, "
            f"num_mixtures={self.num_mixtures}, component={self.component.name!r}, "
            f"dtype={keras.backend.standardize_dtype(self.params.dtype)})"
        )

    @property
    def logits(self) -> Tensor:
        """`(..., K)` mixing logits."""
        return self._split()[0]

    @property
    def probs(self) -> Tensor:
        """`(..., K)` mixing weights, `softmax(logits)`."""
        return statistics.mixing_probs(self.logits)

    @property
    def parts(self) -> tuple:
        """The family's parameter parts, e.g. `(loc, scale)`; see `split_params`."""
        return self._split()[1:]

    @property
    def loc(self) -> Tensor:
        """`(..., K, D)` component locations (means where they exist)."""
        return self._split()[1]

    @property
    def scale(self) -> Tensor:
        """`(..., K, D)` component scales (`(..., K, D, D)` `scale_tril` for `"mvn_tril"`)."""
        return self._split()[2]

    def _split(self) -> tuple:
        return split_params(self.params, self.output_dim, self.num_mixtures, self.component)

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
        return log_prob(self.params, y, self.output_dim, self.num_mixtures, self.component)

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
            component=self.component,
        )

    def mean(self) -> Tensor:
        """`(..., D)`; see `mdn_keras.mixture_mean`."""
        return statistics.mixture_mean(
            self.params, self.output_dim, self.num_mixtures, self.component
        )

    def variance(self) -> Tensor:
        """`(..., D)` per-dimension variance; see `mdn_keras.mixture_variance`."""
        return statistics.mixture_variance(
            self.params, self.output_dim, self.num_mixtures, self.component
        )

    def covariance(self) -> Tensor:
        """`(..., D, D)` full covariance; see `mdn_keras.mixture_covariance`."""
        return statistics.mixture_covariance(
            self.params, self.output_dim, self.num_mixtures, self.component
        )

    def stddev(self) -> Tensor:
        """`(..., D)`; see `mdn_keras.mixture_stddev`."""
        return statistics.mixture_stddev(
            self.params, self.output_dim, self.num_mixtures, self.component
        )

    def mode(self, **kwargs: Any) -> Tensor:
        """`(..., D)` highest-density point; see `mdn_keras.mixture_mode`."""
        return statistics.mixture_mode(
            self.params, self.output_dim, self.num_mixtures, component=self.component, **kwargs
        )

    def most_probable_component_mean(self) -> Tensor:
        """`(..., D)` mean of the heaviest component."""
        return statistics.most_probable_component_mean(
            self.params, self.output_dim, self.num_mixtures, self.component
        )

    def cdf(self, y: Tensor) -> Tensor:
        """`(...)` `P(Y <= y)`, for `output_dim == 1`; see `mdn_keras.mixture_cdf`."""
        return statistics.mixture_cdf(
            self.params, y, self.output_dim, self.num_mixtures, self.component
        )

    def quantile(self, q: Union[float, Tensor], **kwargs: Any) -> Tensor:
        """`F^-1(q)`, for `output_dim == 1`; see `mdn_keras.mixture_quantile`."""
        return statistics.mixture_quantile(
            self.params, q, self.output_dim, self.num_mixtures, component=self.component, **kwargs
        )

    def interval(self, coverage: Union[float, Tensor]) -> tuple[Tensor, Tensor]:
        """Central `(lower, upper)` interval; see `mdn_keras.prediction_interval`."""
        return statistics.prediction_interval(
            self.params, coverage, self.output_dim, self.num_mixtures, self.component
        )

    def to_tfp(self) -> Any:
        """A TFP `MixtureSameFamily`; see `mdn_keras.to_tfp`."""
        return distributions.to_tfp(self.params, self.output_dim, self.num_mixtures, self.component)

    def to_distribution(self) -> Any:
        """The backend's native distribution; see `mdn_keras.to_distribution`."""
        return distributions.to_distribution(
            self.params, self.output_dim, self.num_mixtures, self.component
        )
