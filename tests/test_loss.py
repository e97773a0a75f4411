"""MDNLoss: exact per-example NLL, Keras reductions, sample weights, config."""

import keras
import numpy as np
import pytest
from keras import ops

import mdn_keras
from backend_utils import hessian_vector, to_numpy, value_and_grad
from family_reference import np_family_log_prob, random_family_params
from mdn_keras.families import get_family
from mdn_keras.loss import ANALYTIC_GRADIENT_BACKENDS, nll_with_analytic_gradient
from mdn_keras.params import split_unchecked
from reference import np_log_prob, random_params


@pytest.mark.parametrize("lead,d,k", [((16,), 1, 3), ((8,), 3, 2), ((4, 6), 2, 5)])
def test_per_example_nll_matches_reference(rng, lead, d, k):
    params = random_params(rng, lead, d, k)
    y = rng.normal(size=(*lead, d)).astype("float32")
    want = -np_log_prob(params, y, d, k)
    loss = mdn_keras.MDNLoss(d, k, reduction="none")
    np.testing.assert_allclose(to_numpy(loss(y, params)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(mdn_keras.mdn_nll(y, params, d, k)), want, rtol=1e-5, atol=1e-5
    )
    summed = float(to_numpy(mdn_keras.MDNLoss(d, k, reduction="sum")(y, params)))
    assert summed == pytest.approx(want.sum(), rel=1e-5)
    mean = float(to_numpy(mdn_keras.MDNLoss(d, k)(y, params)))
    assert mean == pytest.approx(want.mean(), rel=1e-5)


def test_sample_weight_per_example_and_per_timestep(rng):
    params = random_params(rng, (4, 6), 2, 3)
    y = rng.normal(size=(4, 6, 2)).astype("float32")
    nll = -np_log_prob(params, y, 2, 3)
    loss = mdn_keras.MDNLoss(2, 3)
    w_example = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    # Keras broadcasts weights against the (batch, time) losses: (batch, 1) per example.
    got = float(to_numpy(loss(y, params, sample_weight=w_example[:, None])))
    assert got == pytest.approx((nll * w_example[:, None]).sum() / nll.size, rel=1e-5)
    w_step = rng.uniform(0, 1, size=(4, 6)).astype("float32")
    got = float(to_numpy(loss(y, params, sample_weight=w_step)))
    assert got == pytest.approx((nll * w_step).sum() / nll.size, rel=1e-5)


def test_1d_targets_without_last_axis_in_fit():
    keras.utils.set_random_seed(0)
    x = np.linspace(-1, 1, 32, dtype="float32")[:, None]
    y_flat = (2 * x[:, 0]).astype("float32")
    model = keras.Sequential([keras.Input((1,)), mdn_keras.MDN(1, 2)])
    model.compile(optimizer="sgd", loss=mdn_keras.MDNLoss(1, 2))
    flat = model.evaluate(x, y_flat, verbose=0)
    col = model.evaluate(x, y_flat[:, None], verbose=0)
    assert flat == pytest.approx(col, rel=1e-6)
    want = -np_log_prob(model.predict(x, verbose=0), y_flat[:, None], 1, 2).mean()
    assert flat == pytest.approx(want, rel=1e-5)


def test_config_round_trip_and_registration():
    loss = mdn_keras.MDNLoss(3, 4, reduction="sum", name="nll")
    config = keras.losses.serialize(loss)
    restored = keras.losses.deserialize(config)
    assert isinstance(restored, mdn_keras.MDNLoss)
    assert (restored.output_dim, restored.num_mixtures, restored.reduction, restored.name) == (
        3,
        4,
        "sum",
        "nll",
    )


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, 3), r"Received: output_dim=0"),
        ((2, -1), r"Received: num_mixtures=-1"),
        ((True, 2), r"Received: output_dim=True"),
    ],
)
def test_invalid_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        mdn_keras.MDNLoss(*args)


def test_mismatched_head_raises_with_shapes():
    loss = mdn_keras.MDNLoss(2, 5)
    with pytest.raises(ValueError, match=r"= 25\. Received: params.shape=\(32, 24\)"):
        loss(np.zeros((32, 2), "float32"), np.zeros((32, 24), "float32"))


# --- the hand-written derivative (Family.log_prob_with_vjp) --------------------


def analytic_nll(params, y, d, k, component="normal"):
    family = get_family(component)
    logits, parts = split_unchecked(ops.convert_to_tensor(params), d, k, family)
    target = ops.expand_dims(ops.convert_to_tensor(y, dtype=parts[0].dtype), -2)
    return nll_with_analytic_gradient(family, logits, parts, target)


@pytest.mark.parametrize("component", ["normal", "laplace"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lead,d,k", [((6,), 1, 3), ((2, 3), 4, 5)])
def test_analytic_gradient_matches_the_backends_derivative(rng, component, dtype, lead, d, k):
    # On every backend, whichever path `mdn_nll` takes there: the same values,
    # and the derivatives with respect to the parameters and the targets.
    params = random_family_params(rng, lead, d, k, component, dtype=dtype)
    y = rng.normal(size=(*lead, d)).astype(dtype)

    def backends(p, t):
        return -mdn_keras.log_prob(p, t, d, k, component=component)

    got_v, got_g = value_and_grad(lambda p: analytic_nll(p, y, d, k, component), params)
    want_v, want_g = value_and_grad(lambda p: backends(p, y), params)
    tol = 1e-12 if got_v.dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got_v, want_v, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_g, want_g, rtol=10 * tol, atol=10 * tol)
    reference = np_family_log_prob(params.astype(np.float64), y, d, k, component)
    np.testing.assert_allclose(got_v, -reference, rtol=1e-5, atol=1e-5)
    _, got_gy = value_and_grad(lambda t: analytic_nll(params, t, d, k, component), y)
    _, want_gy = value_and_grad(lambda t: backends(params, t), y)
    np.testing.assert_allclose(got_gy, want_gy, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("component", ["normal", "laplace"])
def test_second_derivatives_of_the_loss_are_the_backends(rng, component):
    # A recorded backward pass (Hessians, gradient penalties) differentiates
    # the loss's derivative itself: on PyTorch the hand-written rule hands
    # over to autograd there, on TensorFlow the rule is differentiated, on
    # JAX the custom_jvp is. A rule used as a constant would drop terms.
    d, k = 2, 3
    params = random_family_params(rng, (4,), d, k, component, dtype="float64")
    y = rng.normal(size=(4, d))
    v = rng.normal(size=params.shape)

    def ours(p):
        return mdn_keras.mdn_nll(ops.convert_to_tensor(y), p, d, k, component)

    def backends(p):
        return -mdn_keras.log_prob(p, ops.convert_to_tensor(y), d, k, component=component)

    got, want = hessian_vector(ours, params, v), hessian_vector(backends, params, v)
    assert np.abs(want).max() > 0.1
    tol = 1e-10 if got.dtype == np.float64 else 2e-4  # JAX computes in float32 unless x64
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol / 10)


def test_analytic_gradient_keeps_a_nan_to_its_row(rng):
    params = random_params(rng, (4,), 2, 3)
    params[1, 0] = np.nan
    y = rng.normal(size=(4, 2)).astype("float32")
    value, grad = value_and_grad(lambda p: analytic_nll(p, y, 2, 3), params)
    assert np.isnan(value[1]) and np.all(np.isfinite(value[[0, 2, 3]]))
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[[0, 2, 3]]))


@pytest.mark.jax_only
def test_mdn_nll_takes_the_analytic_path_on_jax(rng):
    assert "jax" in ANALYTIC_GRADIENT_BACKENDS
    import jax

    params = random_params(rng, (4,), 2, 3)
    y = rng.normal(size=(4, 2)).astype("float32")
    jaxpr = str(jax.make_jaxpr(lambda p: mdn_keras.mdn_nll(y, p, 2, 3))(params))
    assert "custom_jvp_call" in jaxpr
    # Families without a hand-written derivative take the backend's.
    t_params = random_family_params(rng, (4,), 2, 3, "student_t")
    jaxpr = str(jax.make_jaxpr(lambda p: mdn_keras.mdn_nll(y, p, 2, 3, "student_t"))(t_params))
    assert "custom_jvp_call" not in jaxpr


@pytest.mark.torch_only
def test_mdn_nll_takes_the_analytic_path_on_torch_without_copies(rng):
    import torch

    assert "torch" in ANALYTIC_GRADIENT_BACKENDS
    params = torch.tensor(random_params(rng, (4,), 2, 3), requires_grad=True)
    y = torch.tensor(rng.normal(size=(4, 2)).astype("float32"))
    assert "CustomGradientFunction" in type(mdn_keras.mdn_nll(y, params, 2, 3).grad_fn).__name__
    t_params = torch.tensor(random_family_params(rng, (4,), 2, 3, "student_t"), requires_grad=True)
    t_loss = mdn_keras.mdn_nll(y, t_params, 2, 3, "student_t")
    assert "CustomGradient" not in type(t_loss.grad_fn).__name__
    # Blocks handed to log/exp by the backend's derivative are contiguous
    # (PyTorch's CPU log/exp are ~5x slower over a block of columns); the
    # hand-written path takes the views as they are.
    blocks = mdn_keras.split_params(params, 2, 3)
    assert all(b.is_contiguous() for b in blocks)
    logits, parts = split_unchecked(params, 2, 3, get_family("normal"), contiguous=False)
    storage = params.untyped_storage().data_ptr()
    assert not parts[1].is_contiguous() and parts[1].untyped_storage().data_ptr() == storage


@pytest.mark.torch_only
def test_torch_func_transforms_of_the_loss(rng):
    # torch.func.grad and per-example gradients (vmap of grad): the loss is
    # left to autograd under these transforms.
    import torch

    params = torch.tensor(random_params(rng, (5,), 2, 3))
    y = torch.tensor(rng.normal(size=(5, 2)).astype("float32"))
    want = torch.func.grad(lambda p: -mdn_keras.log_prob(p, y, 2, 3).sum())(params)
    got = torch.func.grad(lambda p: mdn_keras.mdn_nll(y, p, 2, 3).sum())(params)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    per_row = torch.func.vmap(torch.func.grad(lambda p, t: mdn_keras.mdn_nll(t, p, 2, 3)))(
        params, y
    )
    np.testing.assert_allclose(per_row.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def test_a_family_whose_vjp_takes_w_alone_still_trains(rng):
    # Families written for `vjp(w)` (before `with_target`) keep working.
    from mdn_keras.families import Normal

    class OldNormal(Normal):
        def log_prob_with_vjp(self, parts, y):
            log_p, vjp = super().log_prob_with_vjp(parts, y)
            return log_p, lambda w: vjp(w)

    params = random_params(rng, (6,), 2, 3)
    y = rng.normal(size=(6, 2)).astype("float32")
    target = ops.convert_to_tensor(y)
    got_v, got_g = value_and_grad(lambda p: mdn_keras.mdn_nll(target, p, 2, 3, OldNormal()), params)
    want_v, want_g = value_and_grad(lambda p: -mdn_keras.log_prob(p, target, 2, 3), params)
    np.testing.assert_allclose(got_v, want_v, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got_g, want_g, rtol=2e-5, atol=2e-5)


@pytest.mark.jax_only
@pytest.mark.parametrize("component", ["normal", "laplace"])
def test_forward_mode_and_hessians_of_the_loss_on_jax(rng, component):
    # The hand-written rule is a custom_jvp: forward mode, reverse mode and
    # second derivatives all agree with JAX's own derivatives of -log_prob.
    import jax

    d, k = 2, 3
    params = random_family_params(rng, (), d, k, component, dtype="float64")
    y = rng.normal(size=(d,))

    def ours(p, t):
        return mdn_keras.mdn_nll(t, p, d, k, component)

    def backends(p, t):
        return -mdn_keras.log_prob(p, t, d, k, component=component)

    enabled = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        p, t = jax.numpy.asarray(params), jax.numpy.asarray(y)
        tangent = jax.numpy.asarray(rng.normal(size=params.shape))
        got = jax.jvp(lambda q: ours(q, t), (p,), (tangent,))
        want = jax.jvp(lambda q: backends(q, t), (p,), (tangent,))
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
        for fn in (jax.hessian, jax.jacfwd, jax.jacrev):
            np.testing.assert_allclose(
                fn(ours)(p, t), fn(backends)(p, t), rtol=1e-9, atol=1e-11, err_msg=fn.__name__
            )
        # Both arguments at once: the targets' tangent is not a symbolic zero.
        got = jax.jvp(ours, (p, t), (tangent, t))
        want = jax.jvp(backends, (p, t), (tangent, t))
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", enabled)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graphs")
@pytest.mark.parametrize("component", ["normal", "student_t"])
def test_loss_of_the_layers_output_takes_its_blocks_in_a_graph(rng, component):
    # In a TensorFlow graph (Keras' CPU training step) the loss reads the
    # blocks the layer concatenated instead of splitting the concatenate
    # again: no split but the layer's own in the graph, values and gradients equal.
    import tensorflow as tf

    d, k = 2, 3
    layer = mdn_keras.MDN(d, k, component=component)
    layer.build((None, 4))
    x = tf.constant(rng.normal(size=(5, 4)).astype("float32"))
    y = tf.constant(rng.normal(size=(5, d)).astype("float32"))

    loss_fn = mdn_keras.MDNLoss(d, k, component=component)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, layer(x))
        return loss, tape.gradient(loss, layer.trainable_variables)

    def splits(fn):
        graph = tf.function(fn).get_concrete_function(x, y).graph
        return [op for op in graph.get_operations() if op.type in ("Split", "SplitV")]

    assert len(splits(step)) == len(splits(lambda x, y: layer(x)))  # the layer's, if any
    eager, traced = step(x, y), tf.function(step)(x, y)
    np.testing.assert_allclose(traced[0], eager[0], rtol=1e-6)
    for got, want in zip(traced[1], eager[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    # `mdn_nll` reads the flat output itself: its derivative is there in a graph too.
    @tf.function
    def by_output(x, y):
        out = layer(x)
        with tf.GradientTape() as tape:
            tape.watch(out)
            loss = tf.reduce_sum(mdn_keras.mdn_nll(y, out, d, k, component))
        return tape.gradient(loss, out)

    assert by_output(x, y) is not None


def test_shapes_reshape_matches_numpy_and_keeps_gradients():
    # `shapes.reshape` (PyTorch: `Tensor.reshape` directly) reshapes as
    # NumPy does, with -1, rank changes both ways and a 0-row batch, and
    # the gradient flows back through it.
    from mdn_keras.shapes import reshape

    values = np.arange(24, dtype="float32").reshape(2, 12)
    for shape in [(2, 3, 4), (-1, 4), (24,), (2, 1, 12), (1, -1)]:
        got = reshape(ops.convert_to_tensor(values), shape)
        np.testing.assert_array_equal(to_numpy(got), values.reshape(shape))
    empty = reshape(ops.zeros((0, 12)), (0, 3, 4))
    assert tuple(empty.shape) == (0, 3, 4)
    weights = np.linspace(-1, 1, 24).reshape(4, 6)
    _, grad = value_and_grad(
        lambda x: ops.sum(reshape(x, (4, 6)) * ops.convert_to_tensor(weights, "float32")),
        values,
    )
    np.testing.assert_allclose(to_numpy(grad), weights.reshape(2, 12), rtol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graphs")
def test_split_last_takes_a_concatenates_blocks_only_where_they_match():
    import tensorflow as tf

    from mdn_keras.shapes import reusing_blocks, split_last

    a = tf.reshape(tf.range(8.0), (4, 2))
    b = tf.reshape(tf.range(8.0, 20.0), (4, 3))

    @tf.function
    def blocks(sizes, axis=-1):
        x = tf.concat([a, b], axis=-1) if axis == -1 else tf.concat([a[:, :1], a[:, 1:]], axis=0)
        with reusing_blocks():
            parts = split_last(x, sizes)
        return [p.op.type for p in parts], parts

    # Outside `reusing_blocks` (as for `mdn_nll`): always split.
    outside = tf.function(lambda: [p.op.type for p in split_last(tf.concat([a, b], -1), [2, 3])])
    assert outside() == ["SplitV", "SplitV"]
    types, parts = blocks([2, 3])
    assert "SplitV" not in types  # the concatenate's inputs themselves
    np.testing.assert_array_equal(parts[1], b)
    types, parts = blocks([3, 2])  # other sizes: split
    assert types == ["SplitV", "SplitV"]
    np.testing.assert_array_equal(tf.concat(parts, -1), tf.concat([a, b], -1))
    types, parts = blocks([0, 1], axis=0)  # concatenated along another axis: split
    assert types == ["SplitV", "SplitV"]
    assert parts[0].shape[-1] == 0 and parts[1].shape == (8, 1)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch tensors")
def test_loss_of_the_layers_output_takes_its_blocks_on_torch(rng):
    # The layer's output keeps the blocks it concatenated; `MDNLoss` reads
    # them (no split, no concatenate of the gradient), with the same values
    # and gradients as from a copy of the output, which is split.
    import torch

    from mdn_keras.shapes import reusing_blocks, split_last

    d, k = 2, 3
    layer = mdn_keras.MDN(d, k)
    loss_fn = mdn_keras.MDNLoss(d, k, reduction="sum")
    x = torch.tensor(rng.normal(size=(5, 4)).astype("float32"))
    y = torch.tensor(rng.normal(size=(5, d)).astype("float32"))
    out = layer(x)
    sizes = [k * d, k * d, k]
    kept = out._mdn_keras_blocks[2]
    with reusing_blocks():
        assert all(a is b for a, b in zip(split_last(out, sizes), kept, strict=True))
    assert not any(a is b for a, b in zip(split_last(out, sizes), kept, strict=True))
    kernel = layer.kernel.value
    got = torch.autograd.grad(loss_fn(y, out), kernel)[0]
    copied = layer(x) * 1.0  # a new tensor: no kept blocks
    assert not hasattr(copied, "_mdn_keras_blocks")
    want = torch.autograd.grad(loss_fn(y, copied), kernel)[0]
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-6, atol=1e-7)
    # `mdn_nll` reads the flat output itself: its derivative is there.
    assert torch.autograd.grad(mdn_keras.mdn_nll(y, out, d, k).sum(), out)[0].shape == out.shape
    # Changed in place: the kept blocks are stale, so the output is split.
    with torch.no_grad():
        out.mul_(1.5)
    with reusing_blocks():
        blocks = split_last(out, sizes)
    np.testing.assert_array_equal(to_numpy(blocks[0]), to_numpy(out[:, : k * d]))
    # Detached in place, or given new data: no derivative reaches the layer,
    # and the value is that of the new data.
    detached = layer(x)
    detached.detach_()
    assert not loss_fn(y, detached).requires_grad
    replaced = layer(x)
    replaced.data = 1.0 + torch.abs(replaced.data)
    np.testing.assert_allclose(
        to_numpy(loss_fn(y, replaced)), to_numpy(loss_fn(y, replaced.detach().clone())), rtol=1e-6
    )
    # Without gradients (inference) nothing is kept.
    with torch.no_grad():
        assert not hasattr(layer(x), "_mdn_keras_blocks")
