"""The `MDN` Keras layer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import keras
from keras import ops

from mdn_keras.checks import check_float64_supported
from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import (
    check_positive_int,
    check_scale_options,
    params_size,
    scale_from_raw,
)
from mdn_keras.shapes import concat_last, split_last
from mdn_keras.types import Shape, Tensor

if TYPE_CHECKING:
    from mdn_keras.mixture import Mixture


#: PyTorch projects a wide head block by block only from this many elements of
#: saved copying per step, `rows * (P - (n - 1) input_dim)`: below it the extra
#: products' fixed cost is the larger (see `_projected_blocks`).
TORCH_PER_BLOCK_MIN_ELEMENTS = 2**17


def _projected_blocks(inputs: Tensor, kernel: Any, bias: Any, sizes: list[int]) -> list:
    """`inputs @ kernel + bias`, `(..., P)`, as blocks of `sizes` along the last axis.

    One product, then one split. Without XLA (PyTorch; TensorFlow's graphs,
    as in Keras' CPU training step) the split's gradient is a copy of the
    whole `(rows, P)` gradient, while one product per block (of the
    kernel's columns) costs `n - 1` additions of `(rows, input_dim)`
    gradients instead, and more calls. So TensorFlow projects the blocks
    one by one where the copy is the larger, `(n - 1) input_dim < P`, and
    PyTorch, whose calls each cost Python time, where it is larger by
    `TORCH_PER_BLOCK_MIN_ELEMENTS` over all rows. Training step at K=5,
    D=32 after a 128-wide layer, per block against one product, side by
    side: PyTorch 1.06x at B=8, 1.04x at B=1024, 0.94x at B=4096;
    TensorFlow 0.93x-0.99x; at D=8, where no copy is saved, PyTorch took
    1.07x at B=4096. JAX (XLA) 1.00x-1.01x, so it keeps one product. The
    weights are the same either way, split once (TensorFlow at B=1024:
    0.96x the time of a slice per block).
    """
    input_dim = int(kernel.shape[0])
    saved = sum(sizes) - (len(sizes) - 1) * input_dim  # per row
    backend = keras.backend.backend()
    per_block = backend == "tensorflow" and saved > 0
    if backend == "torch" and saved > 0:
        lead = tuple(inputs.shape[:-1])  # symbolic under `torch.export`: one product
        static = all(type(n) is int for n in lead)
        per_block = static and math.prod(lead) * saved >= TORCH_PER_BLOCK_MIN_ELEMENTS
    if not per_block:
        return split_last(_product(inputs, kernel, bias), sizes)
    # One split of the weights (not a slice per block): its gradient is one
    # concatenate of the blocks' gradients, not a zero-filled full-size
    # buffer per block added up.
    kernels = split_last(ops.convert_to_tensor(kernel), sizes)
    biases = split_last(ops.convert_to_tensor(bias), sizes)
    return [_product(inputs, k, b) for k, b in zip(kernels, biases, strict=True)]


def _product(inputs: Tensor, kernel: Any, bias: Any) -> Tensor:
    """`inputs @ kernel + bias`, `(..., units)`.

    On PyTorch one `torch.addmm` over the flattened leading axes: the bias
    is added by the product (no pass of its own over the output, one call
    in place of Keras' two), in the inputs' dtype (float64 in float64,
    where Keras' `ops.matmul` computes it in float32). Under
    `torch.autocast` the product runs in the autocast dtype and the result
    is cast back, as `ops.matmul` does, so the head computes in float32.
    """
    if keras.backend.backend() == "torch":
        import torch

        kernel, bias = ops.convert_to_tensor(kernel), ops.convert_to_tensor(bias)
        if isinstance(inputs, torch.Tensor) and inputs.dtype == kernel.dtype == bias.dtype:
            lead = tuple(inputs.shape[:-1])
            rows = inputs.reshape(math.prod(lead), inputs.shape[-1])  # also for 0 columns
            out = torch.addmm(bias, rows, kernel).to(inputs.dtype)
            return out.reshape(*lead, kernel.shape[-1])
    return ops.add(ops.matmul(inputs, kernel), bias)


@keras.saving.register_keras_serializable(package="mdn_keras")
class MDN(keras.layers.Layer):
    """Mixture Density Network head: a mixture over a `D`-dim target.

    One dense projection (one kernel and bias; a wide head may be multiplied
    block by block, the same values) produces
    `params_size(output_dim, num_mixtures, component)` values; the family's
    constraints make them valid (the scale block goes through a positive,
    bounded activation). For the default `"normal"` family the output is the
    flat parameter tensor laid out as `[loc (K*D) | scale (K*D) | logits (K)]`
    (see `mdn_keras.params`); `mdn_keras.split_params` splits it.

    Component families (`component=`):

    * `"normal"`: diagonal Gaussians, `[loc K*D, scale K*D, logits K]`;
    * `"laplace"`: independent Laplace, `[loc K*D, scale K*D, logits K]`;
    * `"student_t"`: independent Student-t, `[loc K*D, scale K*D, df K*D, logits K]`;
    * `"mvn_tril"`: full-covariance Gaussians, `[loc K*D, scale_tril K*D(D+1)/2, logits K]`.

    Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`), set
    globally or for this layer (`MDN(..., dtype="mixed_float16")`), the head
    computes in, and returns, float32 (the variable dtype), as Keras
    recommends for output layers: its logits and log-scales are what the
    loss exponentiates. A `float64` policy on JAX needs
    `jax.config.update("jax_enable_x64", True)` first (JAX otherwise
    computes in float32); without it the layer raises a `ValueError`.

    Args:
        output_dim: `D`, dimension of the predicted variable (a Python or
            NumPy integer).
        num_mixtures: `K`, number of Gaussian components.
        scale_activation: how raw values become standard deviations:
            `"softplus"` (default), `"exp"` (of a clipped log-variance) or
            `"elu_plus_one"` (keras-mdn-layer's choice; with its floor,
            `min_scale=1e-7`, the scales are the same). `softplus` is the
            default because it grows linearly (no overflow for any input), its
            gradient is bounded by 1, and it never saturates to a zero
            gradient on the large side, unlike a clipped `exp`.
        min_scale: floor added to (or clipped into) every scale, `> 0`.
            Keeps `log(scale)` finite when a component collapses onto
            duplicated targets. The default 1e-4 is far below the spread of
            standardised targets; rescale targets whose natural spread is
            smaller.
        max_scale: optional ceiling; `None` is unbounded for `softplus` and
            `elu_plus_one`, 1e4 for `exp`.
        component: the component family: `"normal"` (default), `"laplace"`,
            `"student_t"`, `"mvn_tril"`, or a `mdn_keras.families.Family`
            (for options, e.g. `StudentT(min_df=2.0)`). The scale activation
            and `min_scale`/`max_scale` apply to the `scale` block, and for
            `"mvn_tril"` to the diagonal of each `scale_tril`; `"student_t"`
            constrains `df = softplus(raw) + min_df`.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: as for `keras.layers.Dense`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch_size, ..., input_dim)`, any rank >= 1.

    Output shape:
        `(batch_size, ..., params_size(output_dim, num_mixtures, component))`.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((1,)),
    ...     keras.layers.Dense(32, activation="tanh"),
    ...     mdn_keras.MDN(output_dim=1, num_mixtures=3),
    ... ])
    >>> model.compile(optimizer="adam", loss=mdn_keras.MDNLoss(1, 3))
    """

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        scale_activation: str = "softplus",
        min_scale: float = 1e-4,
        max_scale: Optional[float] = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        component: ComponentLike = "normal",
        **kwargs: Any,
    ) -> None:
        output_dim = check_positive_int("output_dim", output_dim)
        num_mixtures = check_positive_int("num_mixtures", num_mixtures)
        check_scale_options(scale_activation, min_scale, max_scale)
        dtype = kwargs.get("dtype")
        policy = keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)
        if (
            policy.compute_dtype != policy.variable_dtype
            and getattr(policy, "quantization_mode", None) is None
        ):
            # Mixed precision, global or for this layer: compute in float32.
            kwargs["dtype"] = policy.variable_dtype
        check_float64_supported(policy.compute_dtype, "The MDN layer's dtype policy")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.output_dim = output_dim
        self.num_mixtures = num_mixtures
        self.scale_activation = scale_activation
        self.min_scale = float(min_scale)
        self.max_scale = None if max_scale is None else float(max_scale)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.component = get_family(component)
        self.params_size = params_size(output_dim, num_mixtures, self.component)
        self.input_spec = keras.layers.InputSpec(min_ndim=1)
        self.supports_masking = True

    def build(self, input_shape: Shape) -> None:
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "Expected the last axis of the MDN input to be known. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.params_size),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.params_size,),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=1, axes={-1: input_dim})

    def call(self, inputs: Tensor) -> Tensor:
        k, d = self.num_mixtures, self.output_dim
        sizes = [k * size for size in self.component.part_sizes(d)] + [k]
        blocks = _projected_blocks(inputs, self.kernel, self.bias, sizes)
        parts = self.component.constrain(blocks[:-1], self._scale, d)
        return concat_last([*parts, blocks[-1]])

    def _scale(self, raw: Tensor) -> Tensor:
        return scale_from_raw(raw, self.scale_activation, self.min_scale, self.max_scale)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*tuple(input_shape)[:-1], self.params_size)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "num_mixtures": self.num_mixtures,
            "scale_activation": self.scale_activation,
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "component": self.component.serialize(),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
        }

    def get_loss(self, **kwargs: Any) -> keras.losses.Loss:
        """An `MDNLoss` for this head's `output_dim` and `num_mixtures`."""
        from mdn_keras.loss import MDNLoss

        return MDNLoss(self.output_dim, self.num_mixtures, component=self.component, **kwargs)

    def mixture(self, params: Tensor) -> Mixture:
        """The `mdn_keras.Mixture` of this head's output `params`.

        Args:
            params: `(..., self.params_size)`, this layer's output.

        Returns:
            `Mixture(params, self.output_dim, self.num_mixtures, component=self.component)`.
        """
        from mdn_keras.mixture import Mixture

        return Mixture(params, self.output_dim, self.num_mixtures, component=self.component)
