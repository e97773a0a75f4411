"""The negative log-likelihood loss of an MDN head."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import keras
from keras import ops

from mdn_keras.checks import check_target_strict
from mdn_keras.density import log_prob
from mdn_keras.families import ComponentLike, Family, get_family
from mdn_keras.params import check_params, check_positive_int, split_unchecked
from mdn_keras.shapes import reusing_blocks
from mdn_keras.symbolic import accepts_symbolic
from mdn_keras.types import Tensor


@accepts_symbolic
def mdn_nll(
    y_true: Tensor,
    y_pred: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> Tensor:
    """Per-example negative log-likelihood `-log p(y_true | y_pred)`.

    Unlike `log_prob`, the loss does not broadcast: a target whose leading
    axes only broadcast against `y_pred`'s (a `(B, 1)` target for a
    `(B, T, P)` sequence output, `(4, 1, 2)` against `(4, P)`) would silently
    average over every cross pair, so it raises instead.

    Args:
        y_true: `(..., output_dim)` targets with `y_true.shape[:-1] ==
            y_pred.shape[:-1]`; `(...)` (the last axis dropped) is accepted
            when `output_dim == 1`.
        y_pred: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        output_dim: `D`, a positive int.
        num_mixtures: `K`, a positive int.
        component: the component family (`"normal"` by default).

    Returns:
        `(...)`, not reduced, so masks and per-timestep weights apply.

    Raises:
        ValueError: if the shapes differ where known statically, with both
            shapes in the message. On TensorFlow, axes unknown at trace time
            (`tf.function`, `fit` in graph mode) are compared in-graph, which
            raises `tf.errors.InvalidArgumentError` with the same message.
    """
    family = get_family(component)
    y_pred = check_params(y_pred, output_dim, num_mixtures, family)
    y_true = check_target_strict(y_true, y_pred, output_dim)
    if (
        keras.backend.backend() in ANALYTIC_GRADIENT_BACKENDS
        and family_has_vjp(family)
        and not _torch_transforms_active()
    ):
        # No block goes to `log` or `exp` as it is, so no copies (`split_last`).
        logits, parts = split_unchecked(y_pred, output_dim, num_mixtures, family, contiguous=False)
        return nll_with_analytic_gradient(family, logits, parts, ops.expand_dims(y_true, -2))
    return -log_prob(y_pred, y_true, output_dim, num_mixtures, family)


#: Backends on which `mdn_nll` uses the hand-written derivative of families that
#: have one (`Family.log_prob_with_vjp`). Measured in the training step of
#: `benchmarks/train_step.py` (2-core CPU, K=5, interleaved, against the same
#: model differentiated by the backend): under `jax.jit` it saves about a tenth
#: at D=32 (XLA's derivative of the chain keeps more full-size intermediates);
#: in TensorFlow's graph mode 0-15% (fewer kernels); on PyTorch (eager) fewer
#: full-size passes (no divisions in the backward pass, no derivative for a
#: target that needs none).
ANALYTIC_GRADIENT_BACKENDS = ("jax", "tensorflow", "torch")


def _torch_transforms_active() -> bool:
    """Whether a `torch.func` transform (`grad`, `vmap`, `jacrev`, ...) is running:
    Keras' PyTorch `custom_gradient` has no `setup_context`, which they need,
    so `mdn_nll` is left to autograd there (per-example gradients work)."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def family_has_vjp(family: Family) -> bool:
    """Whether `family` overrides `Family.log_prob_with_vjp`."""
    return type(family).log_prob_with_vjp is not Family.log_prob_with_vjp


def nll_with_analytic_gradient(family: Family, logits: Tensor, parts: tuple, y: Tensor) -> Tensor:
    """`-logsumexp(log_softmax(logits) + log p_k(y))`, `(...)`, with its derivative by hand.

    With `r = softmax(log_softmax(logits) + log p)` the posterior
    responsibilities and `p = softmax(logits)`, the derivative of the
    per-example loss is `p - r` for the logits and, through the family's
    `vjp`, `-r` for its log-densities. The value is the one `log_prob` gives.
    On JAX the rule is a `jax.custom_jvp` (so `jax.jvp`, `jacfwd` and
    Hessians work too), elsewhere an `ops.custom_gradient` (TensorFlow
    differentiates the rule itself for second derivatives; PyTorch, whose
    rule runs outside its graph, takes its own derivative of the loss
    instead whenever the backward pass is recorded, `create_graph=True`).

    Args:
        family: a family whose `log_prob_with_vjp` is not None.
        logits: `(..., K)`.
        parts: the family's parts, `(..., K, *part_shape)`.
        y: `(..., 1, D)` targets.
    """

    # Eager PyTorch computes every derivative it is handed: skip the target's
    # when nothing asks for it (a None derivative is a zero to autograd).
    with_target = keras.backend.backend() != "torch" or bool(getattr(y, "requires_grad", True))

    def forward(logits: Tensor, rest: tuple) -> tuple[Tensor, Callable]:
        return _nll_and_derivatives(family, logits, tuple(rest[:-1]), rest[-1], with_target)

    if keras.backend.backend() == "jax":
        return _jvp_rule_nll(forward, logits, *parts, y)

    @ops.custom_gradient
    def nll(logits: Tensor, *rest: Tensor) -> tuple[Tensor, Callable]:
        total, derivatives = forward(logits, rest)

        def grad(*args: Tensor, upstream: Optional[Tensor] = None) -> tuple:
            if upstream is None:  # TensorFlow passes it positionally
                (upstream,) = args
            elif _records_backward():  # PyTorch, its saved inputs in `args`
                return _torch_derivatives(family, args, upstream)
            return derivatives(ops.expand_dims(upstream, -1))

        return -total, grad

    return nll(logits, *parts, y)


def _records_backward() -> bool:
    """Whether PyTorch records the backward pass now (`create_graph=True`)."""
    import torch

    return torch.is_grad_enabled()


def _torch_derivatives(family: Family, inputs: tuple, upstream: Tensor) -> tuple:
    """PyTorch's own derivative of the loss, itself differentiable: for a
    backward pass that is recorded (Hessians, gradient penalties), where
    the hand-written rule's constants would silently drop terms."""
    import torch

    logits, parts, y = inputs[0], tuple(inputs[1:-1]), inputs[-1]
    value = -ops.logsumexp(ops.log_softmax(logits, axis=-1) + family.log_prob(parts, y), axis=-1)
    wanted = [t for t in inputs if t.requires_grad]
    found = iter(torch.autograd.grad(value, wanted, upstream, create_graph=True, allow_unused=True))
    return tuple(next(found) if t.requires_grad else None for t in inputs)


def _nll_and_derivatives(
    family: Family, logits: Tensor, parts: tuple, y: Tensor, with_target: bool = True
) -> tuple[Tensor, Callable]:
    """`total = logsumexp(log_softmax(logits) + log p_k(y))` `(...)` and
    `derivatives(g)`: `g` (`(..., 1)` or a number) times the derivative of
    `-total` with respect to the logits, each part and `y`, in their shapes
    (None for `y` unless `with_target`)."""
    with_vjp = family.log_prob_with_vjp(parts, y)
    assert with_vjp is not None, f"the {family.name!r} family has no log_prob_with_vjp"
    log_p, vjp = with_vjp
    log_w = ops.log_softmax(logits, axis=-1)
    joint = log_w + log_p
    total = ops.logsumexp(joint, axis=-1)

    def derivatives(g: Any) -> tuple:
        resp = ops.exp(joint - ops.expand_dims(total, -1))
        w = -g * resp
        # A family written for `vjp(w)` alone (no `with_target`) still works.
        skip = not with_target and "with_target" in inspect.signature(vjp).parameters
        parts_and_target = vjp(w, with_target=False) if skip else vjp(w)
        return (g * (ops.exp(log_w) - resp), *parts_and_target)

    return total, derivatives


def _jvp_rule_nll(forward: Callable, *inputs: Tensor) -> Tensor:
    """`-total` under `jax.custom_jvp`: reverse mode (JAX transposes the rule),
    forward mode (`jax.jvp`, `jacfwd`) and higher derivatives all work.

    The tangent of the per-example value is the sum, over each input's
    trailing axes, of its derivative times its tangent; inputs whose tangent
    is a symbolic zero (the targets, under `jax.grad` of the parameters) are
    skipped, so their derivative is never formed.
    """
    import jax
    from jax.custom_derivatives import SymbolicZero

    @jax.custom_jvp
    def nll(*inputs: Tensor) -> Tensor:
        return -forward(inputs[0], inputs[1:])[0]

    def rule(primals: tuple, tangents: tuple) -> tuple:
        total, derivatives = forward(primals[0], primals[1:])
        out = ops.zeros_like(total)
        for d, t in zip(derivatives(1.0), tangents, strict=True):
            if not isinstance(t, SymbolicZero):
                axes = tuple(range(total.ndim, d.ndim))
                out = out + ops.sum(d * t, axis=axes)
        return -total, out

    nll.defjvp(rule, symbolic_zeros=True)
    return nll(*inputs)


@keras.saving.register_keras_serializable(package="mdn_keras")
class MDNLoss(keras.losses.Loss):
    """Negative log-likelihood of targets under the mixture an `MDN` predicts.

    `call` returns the exact per-example `-log p(y|x)` (the `D/2 log 2 pi`
    constant included) computed with log-softmax and log-sum-exp; Keras then
    applies `reduction`, `sample_weight` and any mask carried by `y_pred`
    (from `Masking`, `Embedding(mask_zero=True)`, ...), so padded timesteps
    contribute nothing.

    Where `y_pred` is the `MDN` layer's output, the loss reads the blocks the
    layer concatenated into it (in TensorFlow graphs and on PyTorch; see
    `mdn_keras.shapes.reusing_blocks`), which saves a split and a
    concatenate of the gradient per step; the value and the derivatives
    with respect to the weights are the same. A derivative with respect to
    `y_pred` itself is then not defined: take it of `mdn_nll`.

    Args:
        output_dim: `D`, as given to the `MDN` layer.
        num_mixtures: `K`, as given to the `MDN` layer.
        component: the component family, as given to the `MDN` layer
            (`"normal"` by default).
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"` or `"none"`.
        name: loss name.
        dtype: computation dtype; defaults to `keras.config.floatx()`
            (float32 under mixed precision).

    Call arguments:
        y_true: `(batch_size, ..., output_dim)`; `(batch_size, ...)` when
            `output_dim == 1`. Its leading axes must equal `y_pred`'s (they
            are not broadcast; see `mdn_nll`).
        y_pred: `(batch_size, ..., params_size(output_dim, num_mixtures, component))`.
        sample_weight: optional, broadcastable to `(batch_size, ...)`.
    """

    def __init__(
        self,
        output_dim: int,
        num_mixtures: int,
        reduction: Optional[str] = "sum_over_batch_size",
        name: str = "mdn_nll",
        dtype: Any = None,
        component: ComponentLike = "normal",
    ) -> None:
        output_dim = check_positive_int("output_dim", output_dim)
        num_mixtures = check_positive_int("num_mixtures", num_mixtures)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.output_dim = output_dim
        self.num_mixtures = num_mixtures
        self.component = get_family(component)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        # The `MDN` layer's blocks, where `y_pred` is its output (see `reusing_blocks`).
        with reusing_blocks():
            return mdn_nll(y_true, y_pred, self.output_dim, self.num_mixtures, self.component)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "num_mixtures": self.num_mixtures,
            "component": self.component.serialize(),
        }
