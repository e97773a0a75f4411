"""Small per-backend helpers for tests: gradients and compiled functions."""

import keras
import numpy as np

BACKEND = keras.backend.backend()


def value_and_grad(fn, x):
    """`(fn(x), d sum(fn(x)) / dx)` as NumPy arrays, for a function of one tensor."""
    x = np.asarray(x)
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        value, vjp = jax.vjp(fn, jnp.asarray(x))
        (grad,) = vjp(jnp.ones_like(value))
        return np.asarray(value), np.asarray(grad)
    if BACKEND == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        value = fn(xt)
        value.sum().backward()
        return value.detach().cpu().numpy(), xt.grad.cpu().numpy()
    import tensorflow as tf

    xt = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = fn(xt)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, xt).numpy()


def hessian_vector(fn, x, v):
    """`d/dx (v . d sum(fn(x)) / dx)` as NumPy: the backend differentiates its own
    backward pass (PyTorch's `create_graph=True`, nested TF tapes, JAX twice)."""
    x, v = np.asarray(x), np.asarray(v)
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def directional(p):
            return jnp.sum(jax.grad(lambda q: jnp.sum(fn(q)))(p) * v)

        return np.asarray(jax.grad(directional)(jnp.asarray(x)))
    if BACKEND == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(xt).sum(), xt, create_graph=True)
        (hv,) = torch.autograd.grad((grad * torch.as_tensor(v)).sum(), xt)
        return hv.cpu().numpy()
    import tensorflow as tf

    xt = tf.Variable(x)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            total = tf.reduce_sum(fn(xt))
        directional = tf.reduce_sum(inner.gradient(total, xt) * v)
    return outer.gradient(directional, xt).numpy()


def xla_grad(fn, x):
    """`d sum(fn(x)) / dx` computed inside `jax.jit` or `tf.function(jit_compile=True)`."""
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.jit(jax.grad(lambda p: fn(p).sum()))(x))
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def grad(p):
        with tf.GradientTape() as tape:
            tape.watch(p)
            total = tf.reduce_sum(fn(p))
        return tape.gradient(total, p)

    return grad(tf.constant(x)).numpy()


def compiled(fn):
    """`fn` compiled the backend's way (jax.jit, tf.function); torch runs eagerly."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=False)
    return fn


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)
