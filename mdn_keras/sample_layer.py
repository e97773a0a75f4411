"""`MixtureSample`: a Keras layer that draws from the mixture an `MDN` head predicts.

Params in, `(..., D)` draws out, so a model can generate, be saved and
reloaded (`safe_mode=True`), and be exported with `model.export`. The layer
owns a `keras.random.SeedGenerator`, so successive calls draw afresh (also
inside `model.predict` on JAX, where Keras threads the generator's state).
With `noise_inputs=True` it takes the uniform noise as a second input
instead (`mdn_keras.sample_from_noise`): no random op, for runtimes without
random kernels such as TFLite with builtin ops only.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

import keras
import numpy as np

from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import check_positive_int
from mdn_keras.sampling import check_temperature, noise_size, sample, sample_from_noise
from mdn_keras.types import Shape, Tensor


@keras.saving.register_keras_serializable(package="mdn_keras")
class MixtureSample(keras.layers.Layer):
    """Draws one sample per row from the mixture in its input.

    Args:
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default), as for `MDN`.
        temperature: a number `>= 0` dividing the mixing logits (see `mdn_keras.sample`).
        sigma_temperature: a number `>= 0` multiplying the component covariances.
        seed: an int in `[0, 2**32)` seeding the layer's `SeedGenerator` (the
            same int gives the same sequence of draws from a fresh layer), or
            None for a random start.
        noise_inputs: if True, the layer takes `[params, uniform]` with
            `uniform` of shape `(..., noise_size)` (`self.noise_size`;
            independent `Uniform[0, 1)` numbers) and runs no random op.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call:
        `params` `(..., params_size(D, K, component))`, or `[params, uniform]`
        with `noise_inputs=True`; returns `(..., D)` draws.
    """

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        component: ComponentLike = "normal",
        temperature: float = 1.0,
        sigma_temperature: float = 1.0,
        seed: Optional[int] = None,
        noise_inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int("output_dim", output_dim)
        check_positive_int("num_mixtures", num_mixtures)
        for name, value in (("temperature", temperature), ("sigma_temperature", sigma_temperature)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"Expected `{name}` to be a finite number >= 0. Received: {name}={value!r}"
                )
            check_temperature(name, value)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32
        ):
            raise ValueError(
                f"Expected `seed` to be an int in [0, 2**32) or None. Received: seed={seed!r}"
            )
        if not isinstance(noise_inputs, bool):
            raise ValueError(
                f"Expected `noise_inputs` to be a bool. Received: noise_inputs={noise_inputs!r}"
            )
        self.output_dim = output_dim
        self.num_mixtures = num_mixtures
        self.family = get_family(component)
        self.temperature = float(temperature)
        self.sigma_temperature = float(sigma_temperature)
        self.seed = seed
        self.noise_inputs = noise_inputs
        self.noise_size = noise_size(output_dim, num_mixtures, self.family)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any) -> Tensor:
        if self.noise_inputs:
            if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
                raise ValueError(
                    "Expected `[params, uniform]` as the inputs of a MixtureSample layer with "
                    f"noise_inputs=True. Received: inputs of type {type(inputs).__name__}"
                )
            params, uniform = inputs
            return sample_from_noise(
                params,
                uniform,
                self.output_dim,
                self.num_mixtures,
                temperature=self.temperature,
                sigma_temperature=self.sigma_temperature,
                component=self.family,
            )
        return sample(
            inputs,
            self.output_dim,
            self.num_mixtures,
            temperature=self.temperature,
            sigma_temperature=self.sigma_temperature,
            seed=self.seed_generator,
            component=self.family,
        )

    def compute_output_shape(self, input_shape: Any) -> Shape:
        shape = input_shape[1] if self.noise_inputs else input_shape
        return (*tuple(shape)[:-1], self.output_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            output_dim=self.output_dim,
            num_mixtures=self.num_mixtures,
            component=self.family.serialize(),
            temperature=self.temperature,
            sigma_temperature=self.sigma_temperature,
            seed=self.seed,
            noise_inputs=self.noise_inputs,
        )
        return config
