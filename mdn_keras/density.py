"""The mixture density. Everything that evaluates `log p(y|x)` calls `log_prob`.

    p(y | x) = sum_k pi_k(x) p_k(y | theta_k(x)),  pi = softmax(logits)

computed in log space:

    log p(y | x) = logsumexp_k [ log_softmax(logits)_k + log p_k(y | theta_k) ]

The component log-density `log p_k` is the family's (`mdn_keras.families`);
for the default `"normal"` family

    log N(y; m, s) = -D/2 log(2 pi) - sum_d log s_d - 1/2 sum_d ((y_d - m_d) / s_d)^2

No epsilon is added anywhere: the value is the exact log-density of the
parameters given. The scale floor lives in the layer's activation
(`mdn_keras.params.scale_from_raw`), not here.
"""

from __future__ import annotations

from keras import ops

from mdn_keras.families import ComponentLike, get_family
from mdn_keras.params import check_params, split_unchecked
from mdn_keras.shapes import lead_shape
from mdn_keras.shapes import shape_str as _shape_str
from mdn_keras.types import Tensor


def check_target(y: Tensor, params: Tensor, output_dim: int) -> Tensor:
    """Converts `y` to `params.dtype` with shape `(..., D)`, checking shapes statically.

    `y` of shape `(...)` (without the last axis) is accepted when `output_dim == 1`,
    the shape Keras hands a loss for a 1-D target array.
    """
    y = ops.cast(ops.convert_to_tensor(y), params.dtype)
    lead = tuple(params.shape[:-1])
    try:
        y_shape = tuple(y.shape)
    except ValueError:
        # Unknown rank (a TensorFlow graph fed from an untyped dataset): assume
        # one target per parameter row, as Keras' own losses do.
        return ops.reshape(y, (*lead_shape(params, 1), output_dim))
    if output_dim == 1 and len(y_shape) == len(lead):
        y = ops.expand_dims(y, -1)
        y_shape = tuple(y.shape)
    ok = len(y_shape) >= 1 and y_shape[-1] in (None, output_dim)
    if ok:
        # The leading axes must broadcast against params' leading axes.
        for a, b in zip(reversed(y_shape[:-1]), reversed(lead), strict=False):
            if a is not None and b is not None and a != b and 1 not in (a, b):
                ok = False
    if not ok:
        raise ValueError(
            f"Expected a target of shape (..., output_dim) = (..., {output_dim}) "
            "whose leading axes broadcast with params.shape[:-1] = "
            f"{_shape_str(lead)}. Received: y.shape={_shape_str(y_shape)}, "
            f"params.shape={_shape_str(tuple(params.shape))}"
        )
    return y


def component_log_prob(
    params: Tensor,
    y: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> Tensor:
    """Log-density of `y` under each component, weighted by its log mixing weight.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        y: `(..., output_dim)` targets (or `(...)` when `output_dim == 1`).
        output_dim: `D`.
        num_mixtures: `K`.
        component: the component family (`"normal"` by default).

    Returns:
        `(..., K)`: `log pi_k + log p_k(y)`. Its `logsumexp` over
        the last axis is `log_prob`; its softmax is the posterior responsibility
        of each component for `y`.
    """
    family = get_family(component)
    params = check_params(params, output_dim, num_mixtures, family)
    y = check_target(y, params, output_dim)
    logits, parts = split_unchecked(params, output_dim, num_mixtures, family)
    return ops.log_softmax(logits, axis=-1) + family.log_prob(parts, ops.expand_dims(y, -2))


def log_prob(
    params: Tensor,
    y: Tensor,
    output_dim: int,
    num_mixtures: int,
    component: ComponentLike = "normal",
) -> Tensor:
    """`log p(y | x)` of targets under the mixture an MDN head predicts.

    Args:
        params: `(..., params_size(output_dim, num_mixtures, component))` flat MDN output.
        y: `(..., output_dim)` targets whose leading axes broadcast with
            `params.shape[:-1]`; `(...)` is accepted when `output_dim == 1`.
        output_dim: `D`, the dimension of `y`.
        num_mixtures: `K`, the number of components.
        component: the component family (`"normal"` by default; see
            `mdn_keras.families`).

    Returns:
        `(...)`: the log-density, in `params.dtype`, of shape
        `broadcast(y.shape[:-1], params.shape[:-1])`. A NaN in `y` or
        `params` gives NaN for that entry (it is never replaced).

    Broadcasting is on purpose: it scores many candidate points against one
    mixture, or one point against many. With `params` of shape `(P,)` and
    `y` of shape `(100, D)` (a grid), the result is `(100,)`; with `params`
    of shape `(B, P)` and `y` of shape `(M, 1, D)`, it is `(M, B)`, every
    candidate under every row's mixture. The loss (`mdn_nll`, `MDNLoss`)
    does not broadcast: there `y_true.shape[:-1]` must equal
    `y_pred.shape[:-1]`.

    Raises:
        ValueError: on a wrongly sized last axis, non-broadcasting leading
            axes, or non-floating `params`.
    """
    return ops.logsumexp(
        component_log_prob(params, y, output_dim, num_mixtures, component), axis=-1
    )
