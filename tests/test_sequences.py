"""Sequence outputs (masks, per-timestep weights), step models and rollouts.

Runs on every backend. The references are per-sequence float64 NumPy
computations on the *unpadded* sequences, so a mask or weight that did not
reach the loss (or a wrong denominator) makes them disagree.
"""

import functools

import keras
import numpy as np
import pytest
from keras import ops

import mdn_keras
from mdn_keras.generation import build_mdn_rnn, make_step_model, rollout
from reference import np_log_prob, np_split

D, K = 2, 3
GARBAGE = 1e3  # target value at padded steps: huge NLL if it ever counted


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def masked_lstm_model(features=3, units=4, d=D, k=K):
    model = keras.Sequential(
        [
            keras.Input((None, features)),
            keras.layers.Masking(0.0),
            keras.layers.LSTM(units, return_sequences=True),
            mdn_keras.MDN(d, k),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=mdn_keras.MDNLoss(d, k))
    return model


def padded_batch(rng, lengths, steps, features, d, padding):
    """Inputs padded with zeros (the mask value), targets with GARBAGE."""
    x = np.zeros((len(lengths), steps, features), np.float32)
    y = np.full((len(lengths), steps, d), GARBAGE, np.float32)
    valid = np.zeros((len(lengths), steps), bool)
    for i, n in enumerate(lengths):
        sl = slice(0, n) if padding == "post" else slice(steps - n, steps)
        x[i, sl] = rng.normal(size=(n, features))
        y[i, sl] = rng.normal(size=(n, d))
        valid[i, sl] = True
    return x, y, valid


def per_sequence_nll(model, x, y, valid, d, k):
    """Float64 NLL of each valid step, from the model run on each unpadded sequence."""
    out = []
    for i in range(len(x)):
        params = to_np(model(x[i : i + 1][:, valid[i]]))[0]
        out.append(-np_log_prob(params, y[i][valid[i]], d, k))
    return np.concatenate(out)


# --------------------------------------------------------------------- masks


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_masked_loss_equals_loss_on_unpadded_sequences(rng, padding):
    keras.utils.set_random_seed(1)
    model = masked_lstm_model()
    x, y, valid = padded_batch(rng, [7, 3, 5, 1], 7, 3, D, padding)
    expected = per_sequence_nll(model, x, y, valid, D, K).mean()

    got = model.evaluate(x, y, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The eager output carries the mask to a direct MDNLoss call as well.
    direct = mdn_keras.MDNLoss(D, K)(y, model(x))
    np.testing.assert_allclose(to_np(direct), expected, rtol=1e-5)
    # Without the mask every padded step would count (and be huge).
    unmasked = mdn_keras.MDNLoss(D, K)(y, to_np(model(x)).astype(np.float32))
    assert to_np(unmasked) > 100 * abs(expected)


def test_fit_ignores_padded_steps(rng):
    """Two datasets that differ only at padded steps train identically."""
    keras.utils.set_random_seed(2)
    model = masked_lstm_model()
    x, y, valid = padded_batch(rng, [6, 2, 4, 5], 6, 3, D, "post")
    expected_first_loss = per_sequence_nll(model, x, y, valid, D, K).mean()
    y_clean = np.where(valid[..., None], y, 0.0).astype(np.float32)
    initial = model.get_weights()

    history = model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    trained_garbage = model.get_weights()
    model.set_weights(initial)
    model.fit(x, y_clean, batch_size=len(x), epochs=3, shuffle=False, verbose=0)

    np.testing.assert_allclose(history.history["loss"][0], expected_first_loss, rtol=1e-5)
    assert np.isfinite(history.history["loss"]).all()
    for a, b, w0 in zip(trained_garbage, model.get_weights(), initial, strict=True):
        assert not np.allclose(a, w0)  # training did move the weights
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_embedding_mask_zero(rng):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(6, 4, mask_zero=True),
            keras.layers.LSTM(4, return_sequences=True),
            mdn_keras.MDN(1, 2),
        ]
    )
    model.compile(optimizer="sgd", loss=mdn_keras.MDNLoss(1, 2))
    lengths, steps = [5, 2, 4], 5
    tokens = np.zeros((3, steps), np.int32)
    y = np.full((3, steps), GARBAGE, np.float32)  # 1-D targets: (batch, time)
    for i, n in enumerate(lengths):
        tokens[i, :n] = rng.integers(1, 6, size=n)
        y[i, :n] = rng.normal(size=n)
    valid = tokens > 0
    expected = np.concatenate(
        [
            -np_log_prob(to_np(model(tokens[i : i + 1, :n]))[0], y[i, :n, None], 1, 2)
            for i, n in enumerate(lengths)
        ]
    ).mean()
    assert valid.sum() == sum(lengths)

    got = model.evaluate(tokens, y, batch_size=3, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_per_timestep_sample_weight(rng):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((None, 3))
    h = keras.layers.LSTM(4, return_sequences=True)(inputs)
    model = keras.Model(inputs, mdn_keras.MDN(D, K)(h))
    x = rng.normal(size=(3, 5, 3)).astype(np.float32)
    y = rng.normal(size=(3, 5, D)).astype(np.float32)
    w = rng.uniform(0.0, 2.0, size=(3, 5)).astype(np.float32)
    w[0, 3:] = 0.0
    w[2, 1:] = 0.0
    y[w == 0] = GARBAGE  # zero weight: the target must not matter
    nll = -np_log_prob(to_np(model(x)), np.where(w[..., None] > 0, y, 0.0), D, K)

    # Keras' default "sum_over_batch_size": sum(w * nll) / (batch * time).
    model.compile(optimizer="sgd", loss=mdn_keras.MDNLoss(D, K))
    got = model.evaluate(x, y, sample_weight=w, batch_size=3, verbose=0)
    np.testing.assert_allclose(got, (w * nll).sum() / w.size, rtol=1e-5)

    # "mean_with_sample_weight": the weighted mean, sum(w * nll) / sum(w).
    model.compile(
        optimizer="sgd", loss=mdn_keras.MDNLoss(D, K, reduction="mean_with_sample_weight")
    )
    got = model.evaluate(x, y, sample_weight=w, batch_size=3, verbose=0)
    np.testing.assert_allclose(got, (w * nll).sum() / w.sum(), rtol=1e-5)


# ------------------------------------------------------- step model, rollout


def test_build_mdn_rnn_structure_and_config_round_trip(rng):
    keras.utils.set_random_seed(5)
    model = build_mdn_rnn(3, 2, hidden_units=8, num_mixtures=4)
    assert [tuple(x.shape) for x in model.inputs] == [(None, None, 3), (None, None, 2)]
    assert tuple(model.outputs[0].shape) == (None, None, 4 * (2 * 3 + 1))
    assert model.get_layer("mdn").num_mixtures == 4
    z = rng.normal(size=(2, 4, 3)).astype(np.float32)
    a = rng.normal(size=(2, 4, 2)).astype(np.float32)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(to_np(clone([z, a])), to_np(model([z, a])), atol=1e-6)

    no_action = build_mdn_rnn(3, 0, hidden_units=8)
    assert len(no_action.inputs) == 1
    with pytest.raises(ValueError, match="action_dim"):
        build_mdn_rnn(3, -1)


def stacked_sequential(d=2, k=2):
    return keras.Sequential(
        [
            keras.Input((None, d)),
            keras.layers.GRU(5, return_sequences=True),
            keras.layers.Dense(6, activation="tanh"),
            keras.layers.SimpleRNN(4, return_sequences=True),
            mdn_keras.MDN(d, k),
        ]
    )


@pytest.mark.parametrize("kind", ["mdn_rnn", "stacked"])
def test_step_model_reproduces_training_model(rng, kind):
    keras.utils.set_random_seed(6)
    if kind == "mdn_rnn":
        model = build_mdn_rnn(3, 2, hidden_units=8, num_mixtures=4)
        seq = [rng.normal(size=(3, 6, 3)), rng.normal(size=(3, 6, 2))]
        state_sizes = [8, 8]
    else:
        model = stacked_sequential()
        seq = [rng.normal(size=(3, 6, 2))]
        state_sizes = [5, 4]
    seq = [s.astype(np.float32) for s in seq]
    step = make_step_model(model)

    assert len(step.inputs) == len(seq) + len(state_sizes)
    assert [s.shape[-1] for s in step.outputs[1:]] == state_sizes
    # The very same variables, not copies.
    assert {id(v) for v in step.weights} == {id(v) for v in model.weights}

    states = [np.zeros((3, n), np.float32) for n in state_sizes]
    outputs = []
    for t in range(6):
        params, *states = step.predict_on_batch([s[:, t] for s in seq] + states)
        outputs.append(params)
    np.testing.assert_allclose(
        np.stack(outputs, 1), to_np(model(seq if len(seq) > 1 else seq[0])), atol=1e-5
    )


def test_make_step_model_rejects_what_it_cannot_step():
    inputs = keras.Input((None, 2))
    h = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inputs)
    with pytest.raises(ValueError, match="Bidirectional"):
        make_step_model(keras.Model(inputs, mdn_keras.MDN(2, 2)(h)))
    h = keras.layers.LSTM(3, return_sequences=True, go_backwards=True)(inputs)
    with pytest.raises(ValueError, match="go_backwards"):
        make_step_model(keras.Model(inputs, mdn_keras.MDN(2, 2)(h)))


@pytest.fixture(scope="module")
def mdn_rnn_step():
    keras.utils.set_random_seed(7)
    model = build_mdn_rnn(2, 1, hidden_units=8, num_mixtures=3)
    return model, make_step_model(model)


def rollout_inputs(batch=4, steps=5):
    r = np.random.default_rng(0)
    return (
        r.normal(size=(batch, 2)).astype(np.float32),
        r.uniform(-1, 1, size=(batch, steps, 1)).astype(np.float32),
    )


def test_rollout_shapes_and_seeds(mdn_rnn_step):
    _, step = mdn_rnn_step
    z0, actions = rollout_inputs()
    run = lambda seed: to_np(rollout(step, z0, 5, 2, 3, actions=actions, seed=seed))  # noqa: E731

    first = run(11)
    assert first.shape == (4, 5, 2)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(run(11), first)  # same int seed: same rollouts
    assert not np.allclose(run(12), first)  # another seed: other rollouts
    # Rollouts in a batch are independent draws, not copies.
    z0_same = np.repeat(z0[:1], 4, axis=0)
    same_start = to_np(
        rollout(step, z0_same, 5, 2, 3, actions=np.repeat(actions[:1], 4, 0), seed=3)
    )
    assert not np.allclose(same_start[0], same_start[1])

    generator = keras.random.SeedGenerator(21)
    a = to_np(rollout(step, z0, 5, 2, 3, actions=actions, seed=generator))
    b = to_np(rollout(step, z0, 5, 2, 3, actions=actions, seed=generator))
    assert not np.allclose(a, b)  # the generator advanced
    replay = to_np(rollout(step, z0, 5, 2, 3, actions=actions, seed=keras.random.SeedGenerator(21)))
    np.testing.assert_array_equal(replay, a)


def test_zero_temperature_rollout_follows_most_probable_mean(mdn_rnn_step):
    model, step = mdn_rnn_step
    z0, actions = rollout_inputs(batch=3, steps=6)
    dream = to_np(
        rollout(step, z0, 6, 2, 3, actions=actions, temperature=0.0, sigma_temperature=0.0, seed=1)
    )
    # Teacher-force the training model on the dreamed sequence and pick, at
    # each step, the mean of the component with the largest mixing weight.
    z_in = np.concatenate([z0[:, None], dream[:, :-1]], axis=1).astype(np.float32)
    logits, loc, _ = np_split(to_np(model([z_in, actions])), 2, 3)
    best = np.argmax(logits, axis=-1)
    expected = np.take_along_axis(loc, best[..., None, None], axis=-2)[..., 0, :]
    np.testing.assert_allclose(dream, expected, atol=1e-5)
    # A positive sigma_temperature does add noise around those means.
    noisy = to_np(rollout(step, z0, 6, 2, 3, actions=actions, temperature=0.0, seed=1))
    assert not np.allclose(noisy, dream, atol=1e-3)


def test_rollout_continues_from_returned_state(mdn_rnn_step):
    _, step = mdn_rnn_step
    z0, actions = rollout_inputs(batch=2, steps=6)
    greedy = dict(temperature=0.0, sigma_temperature=0.0)
    whole = to_np(rollout(step, z0, 6, 2, 3, actions=actions, **greedy))
    head, state = rollout(step, z0, 3, 2, 3, actions=actions[:, :3], return_state=True, **greedy)
    assert len(state) == 2 and tuple(ops.shape(state[0])) == (2, 8)
    tail = rollout(
        step, head[:, -1], 3, 2, 3, actions=actions[:, 3:], initial_state=state, **greedy
    )
    np.testing.assert_allclose(np.concatenate([to_np(head), to_np(tail)], 1), whole, atol=1e-6)


def test_rollout_single_input_models(rng):
    keras.utils.set_random_seed(8)
    autoregressive = make_step_model(stacked_sequential(d=2, k=2))
    out = rollout(autoregressive, np.zeros((3, 2)), 4, 2, 2, seed=0)
    assert tuple(ops.shape(out)) == (3, 4, 2)
    # One input holding [x_t, a_t]: actions are concatenated to the sample.
    inputs = keras.Input((None, 3))
    h = keras.layers.LSTM(4, return_sequences=True)(inputs)
    step = make_step_model(keras.Model(inputs, mdn_keras.MDN(2, 2)(h)))
    out = rollout(step, np.zeros((3, 2)), 4, 2, 2, actions=np.ones((3, 4, 1)), seed=0)
    assert tuple(ops.shape(out)) == (3, 4, 2)


def test_rollout_validation(mdn_rnn_step):
    _, step = mdn_rnn_step
    z0, actions = rollout_inputs()
    with pytest.raises(ValueError, match="actions=None"):
        rollout(step, z0, 5, 2, 3)
    with pytest.raises(ValueError, match=r"first_input.shape=\(4, 3\)"):
        rollout(step, np.zeros((4, 3)), 5, 2, 3, actions=actions)
    with pytest.raises(ValueError, match=r"actions.shape=\(4, 2, 1\)"):
        rollout(step, z0, 5, 2, 3, actions=actions[:, :2])
    with pytest.raises(ValueError, match=r"last axes \[2, 3\]"):
        rollout(step, z0, 5, 2, 3, actions=np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="initial_state"):
        rollout(step, z0, 5, 2, 3, actions=actions, initial_state=[np.zeros((4, 8))])
    with pytest.raises(ValueError, match="num_mixtures"):
        rollout(step, z0, 5, 2, 4, actions=actions)
    with pytest.raises(ValueError, match="temperature"):
        rollout(step, z0, 5, 2, 3, actions=actions, temperature=-1.0)
    with pytest.raises(ValueError, match="seed"):
        rollout(step, z0, 5, 2, 3, actions=actions, seed="1")


def op_by_op_rollout(monkeypatch, *args, **kwargs):
    """`rollout` as a loop of `predict_on_batch` and `sample` calls (the path
    of a model that runs eagerly), for comparison with the step functions."""
    with monkeypatch.context() as patch:
        patch.setattr(mdn_keras.generation, "_step_function", lambda *a, **k: None)
        return rollout(*args, **kwargs)


@pytest.mark.parametrize("seed", ["int", "generator", "global"])
@pytest.mark.parametrize(
    "temperatures",
    [
        {},
        {"temperature": 0.7, "sigma_temperature": 0.0},
        {"temperature": "per_row", "sigma_temperature": 1.3},
    ],
)
def test_rollout_draws_what_predict_on_batch_and_sample_draw(
    mdn_rnn_step, monkeypatch, seed, temperatures
):
    _, step = mdn_rnn_step
    z0, actions = rollout_inputs(batch=4, steps=6)
    if temperatures.get("temperature") == "per_row":
        temperatures = {**temperatures, "temperature": ops.convert_to_tensor([0.5, 1.0, 2.0, 0.0])}

    def run(fn, *extra):
        if seed == "global":
            keras.utils.set_random_seed(5)
        seeds = {"int": 5, "generator": keras.random.SeedGenerator(5), "global": None}
        samples, states = fn(
            *extra,
            step,
            z0,
            6,
            2,
            3,
            actions=actions,
            seed=seeds[seed],
            return_state=True,
            **temperatures,
        )
        return to_np(samples), [to_np(s) for s in states]

    samples, states = run(rollout)
    reference, reference_states = run(op_by_op_rollout, monkeypatch)
    assert np.isfinite(samples).all()
    np.testing.assert_array_equal(samples, reference)
    for got, want in zip(states, reference_states, strict=True):
        np.testing.assert_array_equal(got, want)


def test_rollout_compiles_one_step_program_and_reads_current_weights(monkeypatch):
    from mdn_keras import _compile

    keras.utils.set_random_seed(9)
    model = build_mdn_rnn(2, 1, hidden_units=8, num_mixtures=3)
    step = make_step_model(model)
    z0, actions = rollout_inputs(batch=4, steps=5)
    before = _compile.trace_counts["rollout_step"]
    first = to_np(rollout(step, z0, 5, 2, 3, actions=actions, seed=1))
    rollout(step, z0, 5, 2, 3, actions=actions, seed=2, temperature=0.5)
    rollout(step, z0, 5, 2, 3, actions=actions, seed=3, temperature=1.5, sigma_temperature=0.2)
    compiles = keras.backend.backend() in ("jax", "tensorflow")
    # Seeds and number temperatures are inputs of the one program, not constants of new ones.
    assert _compile.trace_counts["rollout_step"] - before == (1 if compiles else 0)

    # The weights are read at every call: trained (here: perturbed) weights are used.
    model.set_weights([w + 0.25 for w in model.get_weights()])
    after = to_np(rollout(step, z0, 5, 2, 3, actions=actions, seed=1))
    assert not np.allclose(after, first)
    reference = to_np(op_by_op_rollout(monkeypatch, step, z0, 5, 2, 3, actions=actions, seed=1))
    np.testing.assert_array_equal(after, reference)
    assert _compile.trace_counts["rollout_step"] - before == (1 if compiles else 0)


class InferenceNoise(keras.layers.Layer):
    """Adds noise from its own generator, in inference too: a layer whose
    state (the generator's) changes at every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.random.SeedGenerator(0)

    def call(self, x):
        return x + keras.random.normal(ops.shape(x), seed=self.generator)


class ThroughNumPy(keras.layers.Layer):
    """The identity through NumPy: runs eagerly only (`supports_jit = False`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False

    def call(self, x):
        return ops.convert_to_tensor(np.asarray(ops.convert_to_numpy(x)))

    def compute_output_shape(self, shape):
        return shape


def mlp_step_model(layer):
    """`Input(2) -> layer -> Dense -> MDN(2, 3)`: a step model with no states."""
    keras.utils.set_random_seed(3)
    x = keras.Input((2,))
    return keras.Model(x, mdn_keras.MDN(2, 3)(keras.layers.Dense(6, "tanh")(layer(x))))


def test_rollout_keeps_the_state_layers_update_in_inference(monkeypatch):
    z0 = np.zeros((4, 2), "float32")
    runs = {}
    for name, run in (("new", rollout), ("old", functools.partial(op_by_op_rollout, monkeypatch))):
        noise = InferenceNoise()
        step = mlp_step_model(noise)
        kwargs = dict(seed=1, temperature=0.0, sigma_temperature=0.0)
        draws = [to_np(run(step, z0, 4, 2, 3, **kwargs)) for _ in range(2)]
        runs[name] = (draws, to_np(noise.generator.state.value))
    (new, new_state), (old, old_state) = runs["new"], runs["old"]
    # The generator advanced at every step, so the second rollout differs from the first.
    assert not np.allclose(new[0], new[1])
    for got, want in zip(new, old, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(new_state, old_state)


@pytest.mark.parametrize("how", ["run_eagerly", "layer_without_jit"])
def test_rollout_of_models_that_run_eagerly(monkeypatch, how):
    from mdn_keras.generation import _steps_as_functions

    if how == "run_eagerly":
        step = mlp_step_model(keras.layers.Identity())
        step.compile(run_eagerly=True)
    else:
        step = mlp_step_model(ThroughNumPy())
        if keras.backend.backend() == "tensorflow":
            step.compile(run_eagerly=True)  # how TensorFlow runs such a layer
    if how == "run_eagerly" or keras.backend.backend() != "torch":
        assert not _steps_as_functions(step)
    z0 = np.zeros((4, 2), "float32")
    got = to_np(rollout(step, z0, 3, 2, 3, seed=1))
    want = to_np(op_by_op_rollout(monkeypatch, step, z0, 3, 2, 3, seed=1))
    assert got.shape == (4, 3, 2)
    np.testing.assert_array_equal(got, want)


def test_rollout_traces_once_per_batch_size_however_many():
    from mdn_keras import _compile

    step = mlp_step_model(keras.layers.Identity())
    sizes = range(1, 11)  # more than the functions kept per model: shapes are not in their key
    counts = []
    for _ in range(2):
        before = _compile.trace_counts["rollout_step"]
        for n in sizes:
            rollout(step, np.zeros((n, 2), "float32"), 2, 2, 3, seed=n)
        counts.append(_compile.trace_counts["rollout_step"] - before)
    compiles = keras.backend.backend() in ("jax", "tensorflow")
    assert counts == ([len(sizes), 0] if compiles else [0, 0])


def test_rollout_step_functions_do_not_keep_the_step_model_alive():
    import gc
    import weakref

    from mdn_keras.generation import _STEPS

    model = build_mdn_rnn(2, 1, hidden_units=8, num_mixtures=3)
    step = make_step_model(model)
    z0, actions = rollout_inputs(batch=4, steps=5)
    rollout(step, z0, 5, 2, 3, actions=actions, seed=1)
    assert step in _STEPS
    alive = weakref.ref(step)
    del model, step
    gc.collect()
    assert alive() is None


# ------------------------------------------------------------------ training


def bimodal_sequences(rng, n, steps):
    """z_{t+1} = 0.6 z_t + 0.4 a_t +- 1 (a fair coin) + N(0, 0.05^2)."""
    z = np.zeros((n, steps + 1, 1))
    a = rng.uniform(-1, 1, size=(n, steps + 1, 1))
    z[:, 0] = rng.normal(size=(n, 1))
    for t in range(steps):
        jump = rng.choice([-1.0, 1.0], size=(n, 1))
        z[:, t + 1] = 0.6 * z[:, t] + 0.4 * a[:, t] + jump + rng.normal(0, 0.05, (n, 1))
    inputs = [z[:, :-1].astype(np.float32), a[:, :-1].astype(np.float32)]
    return inputs, z[:, 1:].astype(np.float32)


@pytest.fixture(scope="module")
def trained_nll():
    """Held-out NLL per step before and after a short training run, K=5 and K=1."""
    rng = np.random.default_rng(0)
    x_train, y_train = bimodal_sequences(rng, 96, 10)
    x_test, y_test = bimodal_sequences(rng, 64, 10)
    result = {}
    for k in (5, 1):
        keras.utils.set_random_seed(0)
        model = build_mdn_rnn(1, 1, hidden_units=16, num_mixtures=k)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=mdn_keras.MDNLoss(1, k))
        before = model.evaluate(x_test, y_test, batch_size=64, verbose=0)
        model.fit(x_train, y_train, batch_size=16, epochs=15, verbose=0)
        result[k] = (before, model.evaluate(x_test, y_test, batch_size=64, verbose=0))
    return result


def test_training_lowers_held_out_nll(trained_nll):
    before, after = trained_nll[5]
    assert after < before - 1.0, trained_nll


def test_mixture_beats_single_gaussian_on_bimodal_sequence(trained_nll):
    # The best single Gaussian has variance ~1 (0.5 log(2 pi e) = 1.42 nats);
    # two well separated modes of std 0.05 are worth well over a nat more.
    assert trained_nll[1][1] > 1.35, trained_nll
    assert trained_nll[5][1] < trained_nll[1][1] - 0.8, trained_nll
