"""Argument checks shared by the layer, the loss and the functions on `params`.

* Numbers: every argument documented as an int or a float also takes NumPy
  integer or floating scalars (`numbers.Integral` / `numbers.Real`); bools
  (Python or NumPy) are refused. Values are stored as Python `int`/`float`.
* Targets of the loss: `y_true.shape[:-1]` must equal `y_pred.shape[:-1]`
  (no broadcasting), checked statically, and in-graph on TensorFlow where a
  static shape is unknown.
* Per-row values (temperatures): a number, a 0-d array/tensor, or one value
  per row, of shape `params.shape[:-1]`.
* Levels (quantile levels, coverages): a number or 0-d array/tensor gives
  results of shape `params.shape[:-1]`; shape `(Q,)` gives `(Q, *params.shape[:-1])`,
  one result per level and row, as `numpy.quantile` does; shape
  `(Q, *params.shape[:-1])` gives one level per row and entry of the first axis.
"""

from __future__ import annotations

import math
import numbers
from typing import Union

import keras
import numpy as np
from keras import ops

from mdn_keras.shapes import lead_shape, shape_str
from mdn_keras.types import Shape, Tensor


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, False for bools (Python or NumPy)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> bool:
    """True for Python and NumPy ints and floats, False for bools (Python or NumPy)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _static_shape(x: Tensor) -> Shape | None:
    """`x`'s static shape, or None where even its rank is unknown."""
    try:
        return tuple(x.shape)
    except ValueError:
        return None


def check_target_strict(
    y: Tensor,
    params: Tensor,
    output_dim: int,
    y_name: str = "y_true",
    params_name: str = "y_pred",
) -> Tensor:
    """`y` as a `params.dtype` tensor of shape `params.shape[:-1] + (output_dim,)`.

    `y` must have exactly that shape, or `params.shape[:-1]` when
    `output_dim == 1`; leading axes that would only broadcast are refused.
    Known axes are compared statically. On TensorFlow, where an axis is
    unknown at trace time (a `tf.function`, `fit`/`evaluate` in graph mode),
    an in-graph assertion compares the run-time shapes and raises
    `tf.errors.InvalidArgumentError` with the same message and both shapes.
    (XLA drops assertions: under `jit_compile=True` the run-time comparison
    is skipped; the static one still runs.)

    Args:
        y: `(..., output_dim)` or, when `output_dim == 1`, `(...)` targets.
        params: `(..., P)` flat MDN parameters, already checked.
        output_dim: `D`.
        y_name, params_name: names used in the error message.

    Returns:
        `(..., output_dim)` targets in `params.dtype`.

    Raises:
        ValueError: if the static shapes differ.
    """
    y = ops.cast(ops.convert_to_tensor(y), params.dtype)
    p_shape = tuple(params.shape)
    lead = p_shape[:-1]
    want = (*lead, output_dim)
    expected = (
        f"Expected {y_name}.shape == {params_name}.shape[:-1] + (output_dim,) = "
        f"{shape_str(want)}"
        + (f" or {params_name}.shape[:-1] = {shape_str(lead)}" if output_dim == 1 else "")
        + "; the leading axes must be equal, they are not broadcast."
    )
    received = _static_shape(y)
    if received is None:
        # Unknown rank (a TensorFlow graph fed from an untyped dataset): one
        # target per parameter row, checked at run time.
        y = _assert_shape_tf(y, params, output_dim, expected, y_name, params_name)
        return ops.reshape(y, (*lead_shape(params, 1), output_dim))
    y_shape, y_given = received, y
    if output_dim == 1 and len(y_shape) == len(lead):
        y = ops.expand_dims(y, -1)
        y_shape = (*y_shape, 1)
    if len(y_shape) != len(want) or any(
        a is not None and b is not None and a != b for a, b in zip(y_shape, want, strict=True)
    ):
        raise ValueError(
            f"{expected} Received: {y_name}.shape={shape_str(received)}, "
            f"{params_name}.shape={shape_str(p_shape)}"
        )
    if any(a is None or b is None for a, b in zip(y_shape, want, strict=True)):
        y = _assert_shape_tf(y, params, output_dim, expected, y_name, params_name, y_given)
    return y


def _assert_shape_tf(
    y: Tensor,
    params: Tensor,
    output_dim: int,
    expected: str,
    y_name: str,
    params_name: str,
    y_given: Tensor = None,
) -> Tensor:
    """On TensorFlow, `y` behind an in-graph check of the run-time shapes.

    `y_given` is the target as the caller passed it (before a last axis of
    size 1 was added), whose shape the message shows.

    The other backends always know their shapes (JAX traces with concrete
    shapes, PyTorch runs eagerly), so there this returns `y` unchanged.
    """
    if keras.backend.backend() != "tensorflow":
        return y
    import tensorflow as tf

    y_dyn, p_dyn = tf.shape(y), tf.shape(params)
    lead = p_dyn[:-1]

    def same(a: Tensor, b: Tensor) -> Tensor:
        if a.shape[0] is not None and b.shape[0] is not None:
            if a.shape[0] != b.shape[0]:
                return tf.constant(False)
            return tf.reduce_all(tf.equal(a, b))
        return tf.cond(
            tf.equal(tf.size(a), tf.size(b)),
            lambda: tf.reduce_all(tf.equal(a, b)),
            lambda: tf.constant(False),
        )

    ok = same(y_dyn, tf.concat([lead, [output_dim]], 0))
    if output_dim == 1 and y.shape.rank is None:
        # Unknown rank: the target may also have dropped its last axis.
        ok = tf.logical_or(ok, same(y_dyn, lead))

    def shape_str(s: Tensor) -> Tensor:
        joined = tf.strings.reduce_join(tf.strings.as_string(s), separator=", ")
        comma = tf.where(tf.equal(tf.size(s), 1), ",", "")
        return tf.strings.join(["(", joined, comma, ")"])

    def message() -> Tensor:
        return tf.strings.join(
            [
                f"{expected} Received: {y_name}.shape=",
                shape_str(y_dyn if y_given is None else tf.shape(y_given)),
                f", {params_name}.shape=",
                shape_str(p_dyn),
            ]
        )

    # The message is formatted only when the check fails: its string ops
    # would otherwise run on every training step.
    text = tf.cond(ok, lambda: tf.constant(""), message)
    with tf.control_dependencies([tf.debugging.Assert(ok, [text])]):
        return tf.identity(y)


def _lead_matches(shape: Shape, lead: Shape) -> bool:
    return len(shape) == len(lead) and all(
        a is None or b is None or a == b for a, b in zip(shape, lead, strict=True)
    )


def per_row_value(name: str, value: object, params: Tensor) -> Union[float, Tensor]:
    """A temperature: a `float` from a number, else a tensor of shape `()` or `params.shape[:-1]`.

    Python and NumPy numbers and NumPy arrays are checked to be finite and
    `>= 0`; a backend tensor's values are not checked (it may live in a
    compiled graph), the caller documents what an invalid one gives.

    Args:
        name: the argument's name, for messages.
        value: a number, a 0-d array/tensor or an array/tensor of shape
            `params.shape[:-1]`.
        params: `(..., P)` flat MDN parameters, already checked.

    Returns:
        A Python float, or a tensor in `params.dtype` of shape `()` or
        `params.shape[:-1]`.

    Raises:
        ValueError: on a bool, a non-finite or negative number or NumPy
            value, or any other shape.
    """
    invalid = ValueError(
        f"Expected `{name}` to be a finite number >= 0. Received: {name}={value!r}"
    )
    if isinstance(value, (bool, np.bool_)):
        raise invalid
    if is_real(value):
        number = float(value)  # type: ignore[arg-type]
        if not (math.isfinite(number) and number >= 0):
            raise invalid
        return number
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise invalid from None
        if array.dtype == np.bool_ or not np.all(np.isfinite(array) & (array >= 0)):
            raise ValueError(
                f"Expected `{name}` to hold finite values >= 0. Received: {name}={value!r}"
            )
    tensor = ops.convert_to_tensor(value)
    if "float" not in keras.backend.standardize_dtype(tensor.dtype) and "int" not in (
        keras.backend.standardize_dtype(tensor.dtype)
    ):
        raise invalid
    tensor = ops.cast(tensor, params.dtype)
    shape, lead = tuple(tensor.shape), tuple(params.shape[:-1])
    if shape != () and not _lead_matches(shape, lead):
        raise ValueError(
            f"Expected `{name}` to be a number, a 0-d array/tensor, or one value per row "
            f"of shape params.shape[:-1] = {shape_str(lead)}. "
            f"Received: {name}.shape={shape_str(shape)}, "
            f"params.shape={shape_str(tuple(params.shape))}"
        )
    return tensor


def check_open_unit(name: str, value: object) -> None:
    """Checks a Python or NumPy number or array lies in (0, 1); tensors are taken as given."""
    if isinstance(value, (bool, np.bool_)):
        ok = False
    elif isinstance(value, (numbers.Real, np.ndarray, np.generic, list, tuple)):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            ok = False
        else:
            ok = (
                arr.size > 0
                and np.asarray(value).dtype != np.bool_
                and bool(np.all((arr > 0) & (arr < 1)))
            )
    else:
        return
    if not ok:
        raise ValueError(
            f"Expected `{name}` in the open interval (0, 1). Received: {name}={value!r}"
        )


def levels(name: str, value: object, params: Tensor) -> Tensor:
    """Probability levels as a tensor that broadcasts against `params.shape[:-1]`.

    The rule (NumPy's for `numpy.quantile`, plus one level per row):

    * a number or 0-d array/tensor: shape `()`, results of shape `params.shape[:-1]`;
    * shape `(Q,)`: reshaped to `(Q, 1, ..., 1)`, results of shape
      `(Q, *params.shape[:-1])`, every level for every row;
    * shape `(Q, *params.shape[:-1])`: one level per row and entry of the
      first axis, results of the same shape.

    Python and NumPy values must lie in `(0, 1)` (checked here); backend
    tensors are not checked.

    Raises:
        ValueError: on any other shape, or a number/NumPy value outside (0, 1).
    """
    check_open_unit(name, value)
    q = ops.cast(ops.convert_to_tensor(value), params.dtype)
    shape, lead = tuple(q.shape), tuple(params.shape[:-1])
    if shape == () or (len(shape) == 1 + len(lead) and _lead_matches(shape[1:], lead)):
        return q
    if len(shape) == 1:
        return ops.reshape(q, (-1 if shape[0] is None else shape[0], *([1] * len(lead))))
    raise ValueError(
        f"Expected `{name}` to be a number, a 0-d array/tensor, levels of shape (Q,), or "
        f"one level per row of shape (Q, *params.shape[:-1]) = (Q, "
        + ", ".join(str(d) for d in lead)
        + f"). Received: {name}.shape={shape_str(shape)}, "
        f"params.shape={shape_str(tuple(params.shape))}"
    )


def check_float64_supported(dtype: str, where: str) -> None:
    """Raises on JAX when `dtype` is float64 but `jax_enable_x64` is off.

    JAX then silently computes in float32; the package refuses instead.
    """
    if dtype != "float64" or keras.backend.backend() != "jax":
        return
    import jax

    if not jax.config.read("jax_enable_x64"):
        raise ValueError(
            f"{where} asks for float64, but JAX computes in float32 unless 64-bit "
            "mode is on. Expected jax.config.update('jax_enable_x64', True) (or "
            "JAX_ENABLE_X64=1) before the model is built. Received: dtype=float64, "
            "jax_enable_x64=False"
        )
