"""Compiled eager calls of the package's loops and many-op internals.

Called eagerly, a loop of `keras.ops` runs op by op (TensorFlow), or is
retraced and recompiled for every fresh Python closure (`ops.fori_loop` on
JAX), and every small op is dispatched on its own. `call(fn, *tensors,
**static)` runs `fn(*tensors, **static)` through one compiled function per
`(fn, static)`, kept in a bounded cache:

* JAX: `jax.jit` of the function of the tensors;
* TensorFlow: `tf.function(jit_compile=True, autograph=False)` with the
  tensors' shapes as its input signature: one XLA program per shape;
* PyTorch (and any other backend): the plain call.

Only eager calls on concrete tensors are compiled. Inside an outer trace
(`jax.jit`, `tf.function`, a Keras layer built symbolically, an export) the
plain function is called, so traced graphs are exactly what they were. The
`static` values are the hashable arguments that fix the program (counts,
families, flags); a call with an unhashable one runs plainly.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable

import keras
from keras import ops

from mdn_keras.symbolic import is_symbolic

#: Compiled functions kept, one per `(fn, static)`; the least recently used goes first.
CACHE_SIZE = 64

#: Traces per function name since import (a trace is a compilation); for tests.
trace_counts: collections.Counter = collections.Counter()


def _traced_jax(tensors: tuple) -> bool:
    import jax

    return any(isinstance(t, jax.core.Tracer) for t in tensors)


def compiles_here(*tensors: Any) -> bool:
    """True when `call` would run the compiled function for these tensors."""
    backend = keras.backend.backend()
    if is_symbolic(*tensors):
        return False  # a symbolic call (a functional model being built)
    if backend == "jax":
        return not _traced_jax(tensors)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not any(
            tf.is_tensor(t) and not hasattr(t, "numpy") for t in tensors
        )
    return False


def with_derivative_of(value: Any, fn: Callable[..., Any], *inputs: Any) -> Any:
    """`value`, held constant, carrying the derivative of `fn(*inputs)`.

    For results found by a search that is not differentiated (a loop run on
    constants) and given the derivative of a cheaper expression: `fn`
    returns a tensor of `value`'s shape whose derivative with respect to
    `inputs` is the one wanted; its value is not used. Where that value is
    not finite, the derivative is 0 there (the result stays `value`); `fn`'s
    partial derivatives must still be finite there, as a reverse pass
    multiplies them by that 0.

    On JAX (a `jax.custom_jvp`: forward and reverse mode) and TensorFlow (a
    `tf.custom_gradient`) `fn` is evaluated only when a derivative is taken,
    so compiled calls that take none (`jax.jit`, `model.predict`) do not run
    it. On PyTorch it runs with the call; callers skip it where
    `may_be_differentiated` is False.

    Args:
        value: the result, any shape.
        fn: a function of `inputs` (backend tensors) to a tensor of `value`'s shape.
        *inputs: floating tensors, the ones differentiated.

    Returns:
        A tensor equal to `value`, bit for bit.
    """
    value = ops.stop_gradient(value)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.custom_jvp
        def carry_jax(point: Any, *args: Any) -> Any:
            return point

        @carry_jax.defjvp
        def rule(primals: tuple, tangents: tuple) -> tuple:
            out, tangent = jax.jvp(fn, primals[1:], tangents[1:])
            return primals[0], ops.where(ops.isfinite(out), tangent, ops.zeros_like(tangent))

        return carry_jax(value, *inputs)
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.custom_gradient
        def carry_tf(*args: Any) -> tuple:
            def grad(upstream: Any) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(args)
                    out = fn(*args)
                upstream = tf.where(tf.math.is_finite(out), upstream, tf.zeros_like(upstream))
                return tape.gradient(
                    out,
                    args,
                    output_gradients=upstream,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )

            return tf.identity(value), grad

        return carry_tf(*inputs)
    out = fn(*inputs)
    delta = out - ops.stop_gradient(out)
    return value + ops.where(ops.isfinite(out), delta, ops.zeros_like(delta))


def may_be_differentiated(*tensors: Any) -> bool:
    """False where no derivative with respect to `tensors` can be taken here.

    That is: concrete JAX arrays (a derivative would trace them), PyTorch
    tensors that do not require gradients (or with gradient mode off), and
    eager TensorFlow with no `GradientTape` recording. Anything traced
    (`jax.jit`, `tf.function`, a symbolic Keras call) may be differentiated.
    """
    if is_symbolic(*tensors):
        return True
    backend = keras.backend.backend()
    if backend == "jax":
        return _traced_jax(tensors)
    if backend == "torch":
        import torch

        return torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in tensors
        )
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return True
        try:
            from tensorflow.python.eager import record
        except ImportError:  # pragma: no cover - a TensorFlow without this module
            return True
        return bool(record.could_possibly_record())
    return True


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled(fn: Callable, static: tuple, signature: tuple, xla: bool) -> Callable:
    """The backend's compiled `tensors -> fn(*tensors, **options)`; `static` holds
    `(name, type, value)` of each option, `signature` the tensors' `(shape,
    dtype)` on TensorFlow (one program per shape: XLA compiles per shape, and
    a `tf.function` left to generalise shapes would lose their ranks)."""
    name = getattr(fn, "__qualname__", repr(fn))
    options = {name: value for name, _, value in static}

    def pure(*tensors: Any) -> Any:
        trace_counts[name] += 1
        return fn(*tensors, **options)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(pure)
    if backend == "tensorflow":
        import tensorflow as tf

        specs = [tf.TensorSpec(shape, dtype) for shape, dtype in signature]
        return tf.function(pure, input_signature=specs, jit_compile=xla, autograph=False)
    return pure


def call(fn: Callable, *tensors: Any, xla_: bool = True, **static: Any) -> Any:
    """`fn(*tensors, **static)`, compiled when called eagerly on JAX or TensorFlow.

    Args:
        fn: a pure function of backend tensors (no state; random ops only
            stateless ones of a seed among `tensors`).
        *tensors: its tensor arguments (backend tensors or NumPy arrays).
        xla_: on TensorFlow, compile with XLA (`jit_compile=True`); False
            runs a plain graph (for stateless random ops, whose numbers XLA
            derives from a seed input differently from TensorFlow's kernels).
        **static: its other arguments, hashable; each new combination compiles anew.
    """
    if not compiles_here(*tensors):
        return fn(*tensors, **static)
    try:
        # A static key with types, so that 1, 1.0 and True do not share a program.
        key = tuple((name, type(value), value) for name, value in sorted(static.items()))
        hash(key)
    except TypeError:
        return fn(*tensors, **static)
    signature: tuple = ()
    if keras.backend.backend() == "tensorflow":
        tensors = tuple(ops.convert_to_tensor(t) for t in tensors)
        signature = tuple((tuple(t.shape), t.dtype) for t in tensors)
    return _compiled(fn, key, signature, xla_)(*tensors)


def clear() -> None:
    """Drops every compiled function (the next calls compile anew)."""
    _compiled.cache_clear()
