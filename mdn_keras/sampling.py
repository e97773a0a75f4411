"""Vectorised sampling from the mixture an MDN head predicts.

Every draw is a deterministic function of `Uniform[0, 1)` noise
(`sample_from_noise`): `noise_size(D, K)` numbers per draw, `K` for the
Gumbel-max choice of a component and the family's `noise_size(D)` for the
point within it. `sample` draws that noise with one random call from one
seed, so every seed `keras.random` takes works, compiled or not, and the same
int seed gives the same draw eagerly and compiled (on TensorFlow the Philox
algorithm is named explicitly; XLA's default differs). `sample_from_noise`
with noise supplied from outside uses no random op at all, so it exports to
runtimes that have none (TFLite's builtin ops, for one). Called eagerly on
JAX or TensorFlow, the noise and the draws run as one cached compiled program
(`mdn_keras._compile`); the seed is drawn eagerly, as before.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence, Union

import keras
import numpy as np
from keras import ops

from mdn_keras import _compile
from mdn_keras.checks import is_int, is_real, per_row_value
from mdn_keras.families import ComponentLike, Family, get_family
from mdn_keras.params import check_floating, check_params, check_positive_int, split_unchecked
from mdn_keras.shapes import lead_shape, shape_str
from mdn_keras.symbolic import accepts_symbolic, refuse_symbolic
from mdn_keras.types import Seed, Tensor

# Smallest uniform draw for the Gumbel noise: keeps -log(-log(u)) finite.
_TINY = 1e-20


def check_temperature(name: str, value: object) -> None:
    """Checks a Python or NumPy number temperature statically (tensors are taken as given)."""
    if isinstance(value, (bool, np.bool_)):
        ok = False
    elif is_real(value):
        number = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(number) and number >= 0
    else:
        return
    if not ok:
        raise ValueError(
            f"Expected `{name}` to be a finite number >= 0. Received: {name}={value!r}"
        )


def split_seed(seed: Seed) -> tuple[Seed, Seed]:
    """Two seeds from one user seed, for loops that draw many times (`rollout`).

    Takes only an int, a `keras.random.SeedGenerator` or None (a seed tensor
    would repeat the same draws at every step of a loop).

    An int gives two fixed ints (so the same int always gives the same draw);
    a `keras.random.SeedGenerator` is returned twice (it advances on each use);
    None uses Keras' global generator.
    """
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed, seed
    if not is_int(seed):
        raise ValueError(
            "Expected `seed` to be an int, a keras.random.SeedGenerator or None. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    seed = int(seed)  # a NumPy integer, e.g. from `rng.integers`
    if not 0 <= seed < 2**32:
        # JAX's keys take unsigned 32-bit seeds; the other backends would wrap silently.
        raise ValueError(f"Expected an int `seed` in [0, 2**32). Received: seed={seed}")
    # A second, decorrelated 32-bit seed (Knuth's multiplicative hash).
    return seed, (seed * 2654435761 + 1) % (2**32)


_SEED_TYPES = "an int, a keras.random.SeedGenerator, None, or a seed tensor of shape (2,)"


def _refuse_generator_under_jax_jit() -> None:
    """A `SeedGenerator` advanced inside `jax.jit` outside a `keras.StatelessScope`
    leaks a tracer into its state: the draw is frozen into the compiled function
    and the next eager use fails. Refused with the pattern that works."""
    if keras.backend.backend() != "jax":
        return
    import jax
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    if isinstance(ops.ones(()), jax.core.Tracer) and not in_stateless_scope():
        raise ValueError(
            "A keras.random.SeedGenerator cannot be advanced inside `jax.jit` (the draw would "
            "be the same on every call and the generator's state would hold a tracer). "
            "Pass a JAX key or a seed tensor of shape (2,) as an argument of the jitted "
            "function instead, e.g. `seed=jax.random.key(i)`, or call the layer or model "
            "through Keras (`model.predict`, a `MixtureSample` layer), which threads the "
            "generator's state. Received: seed=SeedGenerator under jax.jit"
        )


def check_seed(seed: Seed) -> Seed:
    """Validates `seed`; returns it (an int as a Python int).

    Accepted: an int in `[0, 2**32)`, a `keras.random.SeedGenerator`, None
    (Keras' global generator; not inside `jax.jit`), or a seed tensor: a
    backend or NumPy integer tensor of shape `(2,)`, or on JAX a key
    (`jax.random.key` or `jax.random.PRNGKey`).
    """
    if seed is None:
        return seed
    if isinstance(seed, keras.random.SeedGenerator):
        _refuse_generator_under_jax_jit()
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(
            f"Expected `seed` to be {_SEED_TYPES}. Received: seed={seed!r} of type "
            f"{type(seed).__name__}"
        )
    if isinstance(seed, numbers.Integral):
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"Expected an int `seed` in [0, 2**32). Received: seed={seed}")
        return int(seed)
    if hasattr(seed, "shape") and hasattr(seed, "dtype") and not isinstance(seed, str):
        if keras.backend.backend() == "jax":
            import jax

            if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(
                seed.dtype, jax.dtypes.prng_key
            ):
                return seed
        dtype = keras.backend.standardize_dtype(seed.dtype)
        if tuple(seed.shape) != (2,) or "int" not in dtype:
            raise ValueError(
                "Expected a seed tensor of shape (2,) and an integer dtype. "
                f"Received: seed.shape={shape_str(tuple(seed.shape))}, seed.dtype={dtype}"
            )
        return seed
    raise ValueError(
        f"Expected `seed` to be {_SEED_TYPES}. Received: seed={seed!r} of type "
        f"{type(seed).__name__}"
    )


def random_uniform(shape: Sequence[Any], dtype: str, seed: Seed) -> Tensor:
    """`Uniform[0, 1)` numbers of `shape` from a seed `check_seed` accepted.

    Through `keras.random.uniform`, except: on TensorFlow, Philox is named
    explicitly (so an int or a seed tensor gives the same numbers eagerly, in
    `tf.function` and under `jit_compile=True`) and seed tensors are taken;
    on PyTorch a seed tensor `s` seeds a generator with `s[0] + s[1]` (as
    Keras seeds one from a `SeedGenerator`).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        from keras.src.random.seed_generator import draw_seed

        if seed is None or isinstance(seed, (int, keras.random.SeedGenerator)):
            seed = draw_seed(seed)
        seed_tensor = tf.convert_to_tensor(seed)
        if seed_tensor.dtype != tf.int32:
            # Keras' own conversion of its int64 generator states (XLA takes int32 seeds).
            seed_tensor = tf.cast(
                tf.math.floormod(tf.cast(seed_tensor, tf.int64), tf.int32.max - 1), tf.int32
            )
        return tf.random.stateless_uniform(shape, seed=seed_tensor, dtype=dtype, alg="philox")
    if backend == "jax" and seed is not None and hasattr(seed, "shape"):
        import jax
        import jax.numpy as jnp

        if not (
            isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key)
        ):
            seed = jnp.asarray(seed).astype("uint32")
    elif backend == "torch" and seed is not None and hasattr(seed, "shape"):
        values = ops.convert_to_numpy(seed).astype("int64")
        seed = int(values[0] + values[1]) & 0xFFFFFFFF
    return keras.random.uniform(shape, 0.0, 1.0, dtype=dtype, seed=seed)


def check_sample_shape(sample_shape: object) -> tuple[int, ...]:
    """`sample_shape` as a tuple of ints >= 0 (an int `n` is `(n,)`)."""
    shape: Any = (sample_shape,) if isinstance(sample_shape, numbers.Integral) else sample_shape
    ok = isinstance(shape, (tuple, list)) and all(
        isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) and int(n) >= 0
        for n in shape
    )
    if not ok:
        raise ValueError(
            "Expected `sample_shape` to be an int >= 0 or a tuple of them. "
            f"Received: sample_shape={sample_shape!r}"
        )
    return tuple(int(n) for n in shape)


def noise_size(output_dim: int, num_mixtures: int, component: ComponentLike = "normal") -> int:
    """Uniform numbers one draw takes in `sample_from_noise`: `K + family.noise_size(D)`.

    `K` for the Gumbel-max choice of a component, `2 * D` for each family
    shipped (two uniforms per dimension).
    """
    check_positive_int("output_dim", output_dim)
    check_positive_int("num_mixtures", num_mixtures)
    return num_mixtures + get_family(component).noise_size(output_dim)


def _compute_dtype(dtype: str) -> str:
    """float32 for 16-bit params: their uniforms are too coarse for the tails."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _per_row(value: Union[float, Tensor], dtype: str) -> Union[float, Tensor]:
    """A number as is; a tensor broadcasting with the batch shape `(...)` as `(..., 1)`."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    value = ops.cast(ops.convert_to_tensor(value), dtype)
    return ops.expand_dims(value, -1) if len(value.shape) > 0 else value


def _argmax(x: Tensor) -> Tensor:
    """`argmax` over the last axis, with the backend's own op.

    Keras' `ops.argmax` adds a bitcast to order signed zeros, which TFLite
    and ONNX Runtime have no kernel for; the Gumbel scores are never a signed
    zero against another, so the plain op gives the same index.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.argmax(x, axis=-1, output_type=tf.int32)
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.argmax(x, axis=-1)
    if backend == "torch":
        import torch

        return torch.argmax(x, dim=-1)
    return ops.argmax(x, axis=-1)


def _take_component(part: Tensor, index: Tensor, num_mixtures: int, event_ndims: int) -> Tensor:
    """`part[..., index, :]`: part `(..., K, *event)`, index `(*S, ...)` -> `(*S, ..., *event)`.

    A chain of `K - 1` selects rather than a gather: it broadcasts the extra
    leading axes of `index` without copying `part`, and exports to every
    format (PyTorch's ONNX exporter has no `take_along_dim`). Selects, not a
    one-hot masked sum: XLA on CPUs runs that broadcast-and-reduce about ten
    times slower, and a non-finite value of a component not chosen stays out.
    """
    index = ops.reshape(index, (*ops.shape(index), *([1] * event_ndims)))
    rest = (slice(None),) * event_ndims
    chosen = part[(Ellipsis, 0) + rest]
    for k in range(1, num_mixtures):
        chosen = ops.where(index == k, part[(Ellipsis, k) + rest], chosen)
    return chosen


def _from_noise(
    params: Tensor,
    uniform: Tensor,
    output_dim: int,
    num_mixtures: int,
    family: Family,
    temperature: Union[float, Tensor],
    sigma_temperature: Union[float, Tensor],
) -> Tensor:
    """The draws of `sample_from_noise`, on checked arguments.

    Called eagerly on JAX or TensorFlow it runs compiled (`mdn_keras._compile`),
    with number temperatures passed in as 0-d tensors (one program for all
    their values) and validated only where they came in as tensors.
    """
    static: dict[str, Any] = dict(output_dim=output_dim, num_mixtures=num_mixtures, family=family)
    validate = _validated(temperature, sigma_temperature)
    if not _compile.compiles_here(params, uniform):
        return _draws(params, uniform, temperature, sigma_temperature, validate=validate, **static)
    temperatures = _temperature_tensors(temperature, sigma_temperature, params=params)
    return _compile.call(_draws, params, uniform, *temperatures, validate=validate, **static)


def _validated(*temperatures: Union[float, Tensor]) -> tuple:
    """Which temperatures came in as tensors (their values are checked in-graph)."""
    return tuple(not isinstance(t, float) for t in temperatures)


def _temperature_tensors(*temperatures: Union[float, Tensor], params: Tensor) -> list:
    """Number temperatures as 0-d tensors in the compute dtype: a compiled
    function takes them as inputs, so it serves every value."""
    dtype = _compute_dtype(keras.backend.standardize_dtype(params.dtype))
    return [ops.convert_to_tensor(t, dtype) if isinstance(t, float) else t for t in temperatures]


def _drawn_seed(seed: Seed) -> Any:
    """The seed tensor `random_uniform` would draw from `seed` (advancing a
    generator as it would), for a compiled function to take as an input."""
    if seed is None or isinstance(seed, (int, keras.random.SeedGenerator)):
        from keras.src.random.seed_generator import draw_seed

        return draw_seed(seed)
    return seed if ops.is_tensor(seed) else ops.convert_to_tensor(seed)


def draw_inputs(
    params: Any,
    temperature: Union[float, Tensor],
    sigma_temperature: Union[float, Tensor],
) -> tuple[list, tuple]:
    """The temperature inputs of `_sample_draws` and its `validate` option.

    Args:
        params: the parameters, or anything with their `dtype`.
        temperature, sigma_temperature: as `per_row_value` returns them for
            `params`; numbers become 0-d tensors (one compiled program for
            every value).

    Returns:
        `([temperature, sigma_temperature], validate)`.
    """
    temperatures = _temperature_tensors(temperature, sigma_temperature, params=params)
    return temperatures, _validated(temperature, sigma_temperature)


def _sample_draws(
    params: Tensor, seed: Tensor, *temperatures: Tensor, shape: tuple, **options: Any
) -> Tensor:
    """The noise draw and the draws of `sample`, from a seed tensor: one compiled
    program. `options` are `_draws`'s keyword arguments."""
    dtype = _compute_dtype(keras.backend.standardize_dtype(params.dtype))
    return _draws(params, random_uniform(shape, dtype, seed), *temperatures, **options)


def _draws(
    params: Tensor,
    uniform: Tensor,
    temperature: Union[float, Tensor],
    sigma_temperature: Union[float, Tensor],
    *,
    output_dim: int,
    num_mixtures: int,
    family: Family,
    validate: tuple[bool, bool],
) -> Tensor:
    """The body of `_from_noise`; `validate` marks the temperatures given as tensors."""
    out_dtype = keras.backend.standardize_dtype(params.dtype)
    dtype = _compute_dtype(out_dtype)
    params = ops.cast(params, dtype)
    uniform = ops.cast(uniform, dtype)
    logits, parts = split_unchecked(params, output_dim, num_mixtures, family)
    gumbel = -ops.log(-ops.log(ops.maximum(uniform[..., :num_mixtures], _TINY)))
    # argmax(logits + T g) = argmax(logits / T + g) for T > 0, the plain argmax for T = 0.
    index = _argmax(logits + _per_row(temperature, dtype) * gumbel)
    chosen = tuple(
        _take_component(part, index, num_mixtures, ndims)
        for part, ndims in zip(parts, family.part_event_ndims(), strict=True)
    )
    sigma_scale = ops.sqrt(ops.cast(_per_row(sigma_temperature, dtype), dtype))
    draws = ops.cast(
        family.sample_from_noise(chosen, sigma_scale, uniform[..., num_mixtures:]), out_dtype
    )
    tensors = [
        t for t, check in zip((temperature, sigma_temperature), validate, strict=True) if check
    ]
    if not tensors:
        return draws
    # Tensor temperatures are not checked in-graph: a row whose temperature is
    # negative, infinite or NaN gets a NaN draw (on every backend alike).
    valid = _valid_temperature(tensors[0])
    for t in tensors[1:]:
        valid = ops.logical_and(valid, _valid_temperature(t))
    return ops.where(ops.expand_dims(valid, -1), draws, ops.full_like(draws, math.nan))


def _valid_temperature(t: Tensor) -> Tensor:
    """True where a tensor temperature is finite and `>= 0` (False for NaN)."""
    return ops.logical_and(ops.isfinite(t), t >= 0)


def select_component(values: Tensor, index: Tensor, event_ndims: int = 1) -> Tensor:
    """`values[..., index, :]` for `(..., K, *event)` values and `(...)` indices.

    `event_ndims` is the rank of `event`: 1 for `(..., K, D)` parts, 2 for
    `(..., K, D, D)`. A gather (`take_along_axis`): on CPUs it is several
    times faster than multiplying by a one-hot mask, and on GPUs it is as fast.
    Extra axes between the leading ones and `(K, *event)` are broadcast:
    values of shape `(..., M, K, D)` give `(..., M, D)`.
    """
    extra = len(values.shape) - len(index.shape)
    index = ops.reshape(index, (*lead_shape(index, 0), *([1] * extra)))
    axis = -1 - event_ndims
    return ops.squeeze(ops.take_along_axis(values, index, axis=axis), axis=axis)


def sample(
    params: Tensor,
    output_dim: int,
    num_mixtures: int,
    *,
    temperature: Union[float, Tensor] = 1.0,
    sigma_temperature: Union[float, Tensor] = 1.0,
    seed: Seed = None,
    component: ComponentLike = "normal",
    sample_shape: Union[int, Sequence[int]] = (),
) -> Tensor:
    """Draws `sample_shape` independent samples per row from the mixture in `params`.

    A component is picked from `Categorical(softmax(logits / temperature))`,
    then a point from that component with its covariance multiplied by
    `sigma_temperature` (for the default `"normal"` family,
    `N(loc_k, diag(scale_k^2 * sigma_temperature))`: the convention of World
    Models and keras-mdn-layer). The noise is `Uniform[0, 1)` numbers drawn
    in one call from `seed`, fed to `sample_from_noise`.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`.
        num_mixtures: `K`.
        temperature: `>= 0`, a number or a tensor broadcasting with the batch
            shape `(...)` (one per row); divides the mixing logits. `0` always
            picks the most probable component, large values pick uniformly.
        sigma_temperature: `>= 0`, a number or a tensor like `temperature`;
            multiplies each component's covariance (its scale by
            `sqrt(sigma_temperature)`). `0` returns the chosen component's location.
        seed: an int in [0, 2**32) (the same int gives the same draw, eagerly
            and compiled); a `keras.random.SeedGenerator` (advances on each
            call; inside `jax.jit` only through Keras layers and models, which
            thread its state); a seed tensor of shape `(2,)` or a JAX key (the
            way to get fresh draws per call inside `jax.jit`: pass a new key
            as an argument); or None (Keras' global generator; not inside `jax.jit`).
        component: the component family (`"normal"` by default).
        sample_shape: an int or a tuple of ints; TFP's convention.

    Returns:
        `(*sample_shape, ..., D)` samples in `params.dtype`.
    """
    refuse_symbolic(
        "sample",
        "a model that draws needs a layer to own its random state: "
        "`mdn_keras.MixtureSample(output_dim, num_mixtures, seed=...)`.",
        params=params,
        temperature=temperature,
        sigma_temperature=sigma_temperature,
    )
    check_temperature("temperature", temperature)
    check_temperature("sigma_temperature", sigma_temperature)
    sample_shape = check_sample_shape(sample_shape)
    family = get_family(component)
    seed = check_seed(seed)
    params = check_params(params, output_dim, num_mixtures, family)
    temperature = per_row_value("temperature", temperature, params)
    sigma_temperature = per_row_value("sigma_temperature", sigma_temperature, params)
    dtype = _compute_dtype(keras.backend.standardize_dtype(params.dtype))
    shape = (*sample_shape, *ops.shape(params)[:-1], noise_size(output_dim, num_mixtures, family))
    if _compile.compiles_here(params, *([seed] if hasattr(seed, "shape") else [])) and all(
        isinstance(n, int) for n in shape
    ):
        # Eagerly on JAX or TensorFlow: the seed is drawn here, the noise and
        # the draws in one compiled program (the same numbers as op by op).
        temperatures, validate = draw_inputs(params, temperature, sigma_temperature)
        return _compile.call(
            _sample_draws,
            params,
            _drawn_seed(seed),
            *temperatures,
            shape=shape,
            output_dim=output_dim,
            num_mixtures=num_mixtures,
            family=family,
            validate=validate,
            xla_=False,  # XLA derives Philox's key from a seed input its own way
        )
    uniform = random_uniform(shape, dtype, seed)
    return _from_noise(
        params, uniform, output_dim, num_mixtures, family, temperature, sigma_temperature
    )


@accepts_symbolic
def sample_from_noise(
    params: Tensor,
    uniform: Tensor,
    output_dim: int,
    num_mixtures: int,
    *,
    temperature: Union[float, Tensor] = 1.0,
    sigma_temperature: Union[float, Tensor] = 1.0,
    component: ComponentLike = "normal",
) -> Tensor:
    """Samples from the mixture in `params` as a deterministic function of uniform noise.

    The draws have exactly the law `sample` draws from (the same function of
    the noise), and no random op runs: supply the noise from outside (e.g.
    `numpy.random.default_rng().random(shape)`) to sample in a runtime
    without random kernels, such as TFLite with builtin ops only. Noise
    outside `[0, 1)` gives meaningless draws.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        uniform: `(*sample_shape, ..., noise_size(output_dim, num_mixtures, component))`
            independent `Uniform[0, 1)` numbers; its leading axes broadcast
            with the batch shape `(...)` of `params` (extra leading axes are
            independent draws).
        output_dim: `D`.
        num_mixtures: `K`.
        temperature: as in `sample`.
        sigma_temperature: as in `sample`.
        component: the component family (`"normal"` by default).

    Returns:
        `(*sample_shape, ..., D)` samples in `params.dtype`.
    """
    check_temperature("temperature", temperature)
    check_temperature("sigma_temperature", sigma_temperature)
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    temperature = per_row_value("temperature", temperature, params)
    sigma_temperature = per_row_value("sigma_temperature", sigma_temperature, params)
    uniform = ops.convert_to_tensor(uniform)
    check_floating("uniform", uniform)
    size = noise_size(output_dim, num_mixtures, family)
    shape = tuple(uniform.shape)
    if len(shape) < len(params.shape) or shape[-1] != size:
        raise ValueError(
            f"Expected `uniform` of shape (*sample_shape, ..., {size}) with the "
            f"{len(params.shape) - 1} batch axes of params "
            f"(noise_size(output_dim={output_dim}, num_mixtures={num_mixtures}) = {size}). "
            f"Received: uniform.shape={shape_str(shape)}, "
            f"params.shape={shape_str(tuple(params.shape))}"
        )
    return _from_noise(
        params, uniform, output_dim, num_mixtures, family, temperature, sigma_temperature
    )
