"""Keras metrics that judge the mixture an `MDN` head predicts.

Each is a `keras.metrics.MeanMetricWrapper` around a per-example value, so
`sample_weight` and Keras masks (padded timesteps) apply exactly as for
Keras' own metrics (in `model.compile`, Keras hands `sample_weight` to the
metrics listed in `weighted_metrics=` only; masks apply to both lists).
Each is registered and serialisable (its `component` is stored with
`Family.serialize`), so a compiled model reloads with
`keras.saving.load_model(path, safe_mode=True)` and no `custom_objects`.

    model.compile(
        optimizer="adam",
        loss=mdn_keras.MDNLoss(D, K),
        metrics=[
            mdn_keras.metrics.CRPS(D, K),
            mdn_keras.metrics.IntervalCoverage(D, K, coverage=0.9),
            mdn_keras.metrics.MixtureMeanSquaredError(D, K),
        ],
    )

* `NegativeLogLikelihood`: `-log p(y | x)` (the `MDNLoss` value, as a metric).
* `CRPS`: `mdn_keras.scores.crps`, averaged over the `D` dimensions.
* `IntervalCoverage(coverage)`: the fraction of targets inside the central
  `coverage` interval of their marginal (per dimension, averaged over the
  `D` dimensions). A calibrated model reports `coverage`.
* `MixtureMeanSquaredError`: `mean_d (y_d - E[y_d])^2` with `E[y]` the
  mixture mean.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

from mdn_keras.density import check_target
from mdn_keras.families import ComponentLike, get_family
from mdn_keras.loss import mdn_nll
from mdn_keras.params import check_positive_int
from mdn_keras.scores import crps, pit
from mdn_keras.statistics import mixture_mean
from mdn_keras.types import Tensor


class MixtureMetric(keras.metrics.MeanMetricWrapper):
    """Base: the weighted mean of a per-example value of `(y_true, y_pred)`.

    Subclasses implement `values(y_true, y_pred)` -> `(batch, ...)` (the
    leading axes of `y_pred` without its last one).

    Args:
        output_dim: `D`, as given to the `MDN` layer.
        num_mixtures: `K`, as given to the `MDN` layer.
        component: the component family, as given to the `MDN` layer.
        name: metric name.
        dtype: dtype of the metric's state.
    """

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
        name: str = "mixture_metric",
        dtype: Any = None,
    ) -> None:
        check_positive_int("output_dim", output_dim)
        check_positive_int("num_mixtures", num_mixtures)
        super().__init__(fn=self.values, name=name, dtype=dtype)
        self.output_dim = output_dim
        self.num_mixtures = num_mixtures
        self.component = get_family(component)

    def values(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        """`(batch, ...)` per-example values."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "output_dim": self.output_dim,
            "num_mixtures": self.num_mixtures,
            "component": self.component.serialize(),
        }

    @classmethod
    def from_config(cls, config: dict) -> MixtureMetric:
        return cls(**config)


@keras.saving.register_keras_serializable(package="mdn_keras")
class NegativeLogLikelihood(MixtureMetric):
    """Mean `-log p(y_true | y_pred)` (nats; lower is better). See `MixtureMetric` for args."""

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
        name: str = "nll",
        dtype: Any = None,
    ) -> None:
        super().__init__(output_dim, num_mixtures, component, name=name, dtype=dtype)
        self._direction = "down"

    def values(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return mdn_nll(y_true, y_pred, self.output_dim, self.num_mixtures, self.component)


@keras.saving.register_keras_serializable(package="mdn_keras")
class CRPS(MixtureMetric):
    """Mean CRPS of the marginal mixtures, averaged over the `D` dimensions.

    In the units of `y` (lower is better); `mdn_keras.scores.crps` per
    example. See `MixtureMetric` for args.
    """

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
        name: str = "crps",
        dtype: Any = None,
    ) -> None:
        super().__init__(output_dim, num_mixtures, component, name=name, dtype=dtype)
        self._direction = "down"

    def values(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        score = crps(y_pred, y_true, self.output_dim, self.num_mixtures, self.component)
        return ops.sum(score, axis=-1) / self.output_dim


@keras.saving.register_keras_serializable(package="mdn_keras")
class IntervalCoverage(MixtureMetric):
    """Fraction of targets inside the central `coverage` interval of their marginal.

    For each dimension `d` the interval is
    `[F_d^-1((1 - coverage) / 2), F_d^-1((1 + coverage) / 2)]` of the
    marginal mixture `F_d`; `y_d` lies in it exactly when its PIT satisfies
    `|F_d(y_d) - 1/2| <= coverage / 2`, which is what is computed (no
    quantile search). Per example the value is the fraction of the `D`
    dimensions covered (each dimension's interval on its own, not a joint
    region), and the metric averages it over examples: a calibrated model
    reports `coverage`; less means too narrow predictions.

    Args:
        output_dim, num_mixtures, component, name, dtype: see `MixtureMetric`.
        coverage: nominal probability of the interval, in `(0, 1)`.
    """

    coverage: float

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
        coverage: float = 0.9,
        name: str = "interval_coverage",
        dtype: Any = None,
    ) -> None:
        if (
            isinstance(coverage, (bool, np.bool_))
            or not isinstance(coverage, numbers.Real)
            or not (math.isfinite(float(coverage)) and 0.0 < float(coverage) < 1.0)
        ):
            raise ValueError(
                "Expected `coverage` to be a number in the open interval (0, 1). "
                f"Received: coverage={coverage!r}"
            )
        super().__init__(output_dim, num_mixtures, component, name=name, dtype=dtype)
        self.coverage = float(coverage)

    def values(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        u = pit(y_pred, y_true, self.output_dim, self.num_mixtures, self.component)
        inside = ops.cast(ops.abs(u - 0.5) <= 0.5 * self.coverage, u.dtype)
        return ops.sum(inside, axis=-1) / self.output_dim

    def get_config(self) -> dict:
        return {**super().get_config(), "coverage": self.coverage}


@keras.saving.register_keras_serializable(package="mdn_keras")
class MixtureMeanSquaredError(MixtureMetric):
    """Mean squared error of the mixture mean, `mean_d (y_d - E[y_d])^2`.

    The point-forecast error of the predicted mixture (lower is better); NaN
    where the mean does not exist (a Student-t with `df <= 1`). See
    `MixtureMetric` for args.
    """

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
        name: str = "mixture_mse",
        dtype: Any = None,
    ) -> None:
        super().__init__(output_dim, num_mixtures, component, name=name, dtype=dtype)
        self._direction = "down"

    def values(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        mean = mixture_mean(y_pred, self.output_dim, self.num_mixtures, self.component)
        y = check_target(y_true, ops.convert_to_tensor(y_pred), self.output_dim)
        return ops.sum(ops.square(y - mean), axis=-1) / self.output_dim


__all__ = [
    "CRPS",
    "IntervalCoverage",
    "MixtureMeanSquaredError",
    "MixtureMetric",
    "NegativeLogLikelihood",
]
