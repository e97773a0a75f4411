"""Generation from sequence models: one-step models and rollouts (the MDN-RNN).

A sequence model trained with teacher forcing maps a whole input sequence to
one MDN output per timestep. To generate, it has to run one step at a time,
feeding each sample back as the next input and carrying the recurrent state.

* `make_step_model(model)` builds, from a trained functional sequence model,
  a one-step functional model that shares its weights (no copy) and passes the
  recurrent state explicitly:

      inputs:  [*per-step data inputs (batch, features), *states (batch, units)]
      outputs: [params (batch, K * (2D + 1)), *new states]

  Each recurrent layer (`LSTM`, `GRU`, `SimpleRNN`) is replaced by one call
  of its own cell; every other layer is called as it is, on a single step.
* `rollout(step_model, first_input, num_steps, ...)` runs that model in a
  loop, batched over rollouts, sampling with `mdn_keras.sample`.
* `build_mdn_rnn(latent_dim, action_dim, ...)` builds the World Models
  MDN-RNN `(z_t, a_t) -> LSTM -> MDN(z_{t+1})` for training.

The state is an ordinary input and output, never `stateful=True`, so the same
code runs eagerly on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import collections
import weakref
from typing import Any, Callable, Optional, Sequence, Union

import keras
from keras import ops

from mdn_keras import _compile
from mdn_keras.checks import is_int, per_row_value
from mdn_keras.families import ComponentLike, Family, get_family
from mdn_keras.layer import MDN
from mdn_keras.params import check_positive_int, params_size
from mdn_keras.sampling import (
    _drawn_seed,
    _sample_draws,
    check_temperature,
    draw_inputs,
    noise_size,
    sample,
    split_seed,
)
from mdn_keras.shapes import shape_str as _shape_str
from mdn_keras.types import Seed, Tensor

_UNSUPPORTED_WRAPPERS = ("Bidirectional", "TimeDistributed")
#: Layers that mix timesteps (or need the time axis), refused by name.
_TIME_MIXING = (
    "Conv1D",
    "Conv1DTranspose",
    "SeparableConv1D",
    "DepthwiseConv1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "GlobalMaxPooling1D",
    "GlobalAveragePooling1D",
    "Cropping1D",
    "ZeroPadding1D",
    "UpSampling1D",
    "MultiHeadAttention",
    "Attention",
    "AdditiveAttention",
    "GroupedQueryAttention",
)


def build_mdn_rnn(
    latent_dim: int,
    action_dim: int,
    hidden_units: int = 256,
    num_mixtures: int = 5,
    *,
    name: str = "mdn_rnn",
    component: ComponentLike = "normal",
    **mdn_kwargs: Any,
) -> keras.Model:
    """The World Models MDN-RNN: `(z_t, a_t)` sequences -> LSTM -> `MDN(z_{t+1})`.

    A functional model made only of registered layers, so it saves and loads
    with `model.save(...)` / `keras.saving.load_model(...)` once `mdn_keras`
    is imported. Train it with `mdn_keras.MDNLoss(latent_dim, num_mixtures)`
    on targets `z[:, 1:]` given inputs `z[:, :-1]`, `a[:, :-1]`; generate with
    `rollout(make_step_model(model), ...)`.

    Args:
        latent_dim: `D`, the size of the latent (or state) vector `z`.
        action_dim: size of the action vector; `0` builds a model without an
            action input (`z_t -> z_{t+1}`).
        hidden_units: LSTM units.
        num_mixtures: `K`, mixture components of the MDN head.
        name: model name.
        component: the component family of the head (`"normal"` by default).
        **mdn_kwargs: passed to `MDN` (`scale_activation`, `min_scale`, ...).

    Returns:
        A `keras.Model` with inputs `z` of shape `(batch, time, latent_dim)`
        and, if `action_dim > 0`, `action` of shape `(batch, time, action_dim)`
        (in that order), and output `(batch, time, K * (2 * latent_dim + 1))`.
        Its layers are named `"lstm"` and `"mdn"`.
    """
    latent_dim = check_positive_int("latent_dim", latent_dim)
    hidden_units = check_positive_int("hidden_units", hidden_units)
    num_mixtures = check_positive_int("num_mixtures", num_mixtures)
    if not is_int(action_dim) or action_dim < 0:
        raise ValueError(
            f"Expected `action_dim` to be an integer >= 0. Received: action_dim={action_dim!r}"
        )
    action_dim = int(action_dim)  # type: ignore[call-overload]
    z = keras.Input((None, latent_dim), name="z")
    inputs = [z]
    h = z
    if action_dim > 0:
        a = keras.Input((None, action_dim), name="action")
        inputs.append(a)
        h = keras.layers.Concatenate(axis=-1, name="z_action")([z, a])
    h = keras.layers.LSTM(hidden_units, return_sequences=True, name="lstm")(h)
    params = MDN(latent_dim, num_mixtures, name="mdn", component=component, **mdn_kwargs)(h)
    return keras.Model(inputs, params, name=name)


def _is_recurrent(layer: Any) -> bool:
    return isinstance(layer, keras.layers.RNN)


def _state_sizes(layer: Any) -> list:
    sizes = layer.cell.state_size
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    for size in sizes:
        if not isinstance(size, int):
            raise ValueError(
                "make_step_model supports recurrent cells whose states are "
                f"vectors. Received: layer {layer.name!r} with "
                f"cell.state_size={layer.cell.state_size!r}"
            )
    return sizes


def _check_layer(layer: Any) -> None:
    name = type(layer).__name__
    if name in _UNSUPPORTED_WRAPPERS:
        raise ValueError(
            f"make_step_model cannot step a `{name}` layer one timestep at a time. "
            f"Received: layer {layer.name!r} of type {name}"
        )
    if name in _TIME_MIXING:
        raise ValueError(
            f"make_step_model cannot step a `{name}` layer: it mixes timesteps, so "
            "it cannot run on one timestep at a time. Expected layers that act on "
            "each timestep separately (Dense, MDN, Concatenate, ...) besides the "
            f"recurrent ones. Received: layer {layer.name!r} of type {name}"
        )
    if _is_recurrent(layer) and layer.go_backwards:
        raise ValueError(
            "make_step_model needs recurrent layers that run forward in time. "
            f"Received: layer {layer.name!r} with go_backwards=True"
        )
    if isinstance(layer, keras.Model) and any(
        _is_recurrent(inner) or type(inner).__name__ in _UNSUPPORTED_WRAPPERS
        for inner in layer._flatten_layers(include_self=False)
    ):
        raise ValueError(
            "make_step_model does not look inside nested models. Build the "
            "training model as one flat functional model. Received: nested "
            f"model {layer.name!r} that contains a recurrent layer"
        )


def make_step_model(model: keras.Model, name: Optional[str] = None) -> keras.Model:
    """A one-timestep functional model that shares `model`'s weights.

    `model` is a functional (or `Sequential` built with an `Input`) sequence
    model whose inputs are `(batch, time, ...)` and whose single output is
    the MDN parameter sequence `(batch, time, P)`. Each recurrent layer
    (`LSTM`, `GRU`, `SimpleRNN`, any `keras.layers.RNN`) must run forward; it
    is replaced by one call of its cell, with its state as explicit inputs
    and outputs. Every other layer is reused unchanged and so must act on
    each timestep separately (`Dense`, `MDN`, `Concatenate`, `Embedding`,
    `Masking`, `Dropout`, normalisation, ...); layers that mix timesteps
    (`Conv1D`, attention, `Bidirectional`) cannot be stepped.

    The weights are the same variables, not copies: training `model` further
    updates the step model. Masks are not used when stepping: every step is
    treated as valid.

    Args:
        model: the trained sequence model.
        name: name of the step model; defaults to `model.name + "_step"`.

    Returns:
        A `keras.Model` with inputs `[*x_t, *states]` and outputs
        `[params_t, *new_states]`: `x_t` has the shape of each of `model`'s
        inputs without the time axis, `(batch, ...)`; `params_t` is
        `(batch, P)`; the states are `(batch, units)`, in the order of the
        recurrent layers in the graph (an `LSTM` contributes `[h, c]`, a
        `GRU` or `SimpleRNN` `[h]`). `len(step_model.outputs) - 1` is the
        number of states. Calling it on `model`'s inputs one timestep at a
        time, starting from zero states, reproduces `model`'s outputs.

    Raises:
        ValueError: if `model` is not functional, has more than one output, an
            input without a time axis, or a layer that cannot be stepped.
    """
    if not isinstance(model, keras.Model) or not getattr(model, "built", False):
        raise ValueError(
            f"Expected a built functional or Sequential keras.Model. Received: model={model!r}"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            "Expected a functional model, or a Sequential model built from a "
            f"keras.Input. Received: model {model.name!r} of type {type(model).__name__}"
        )
    if len(outputs) != 1:
        raise ValueError(
            "Expected a model with a single output (the MDN parameters). "
            f"Received: {len(outputs)} outputs, shapes "
            f"{[_shape_str(tuple(o.shape)) for o in outputs]}"
        )
    for x in inputs:
        if len(x.shape) < 2:
            raise ValueError(
                "Expected every model input to have a time axis, "
                f"(batch, time, ...). Received: input {x.name!r} of shape "
                f"{_shape_str(tuple(x.shape))}"
            )
    # A plain functional view of the same layers (also turns a Sequential
    # model into one, which `clone_model(call_function=...)` requires).
    graph = keras.Model(inputs, outputs)
    for layer in graph.layers:
        _check_layer(layer)

    step_inputs = [
        keras.Input(shape=tuple(x.shape[2:]), dtype=x.dtype, name=f"{x.name}_step") for x in inputs
    ]
    # One explicit input per state of each recurrent layer, in graph order.
    state_inputs = {
        id(layer): [
            keras.Input((size,), dtype=layer.cell.dtype, name=f"{layer.name}_state_{i}")
            for i, size in enumerate(_state_sizes(layer))
        ]
        for layer in graph.layers
        if _is_recurrent(layer)
    }
    flat_states = [s for states in state_inputs.values() for s in states]
    new_states: dict = {}

    def call_function(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_recurrent(layer):
            try:
                return layer(*args, **kwargs)
            except (ValueError, TypeError) as err:
                shapes = [_shape_str(tuple(a.shape)) for a in args if hasattr(a, "shape")]
                raise ValueError(
                    f"make_step_model cannot step layer {layer.name!r} of type "
                    f"{type(layer).__name__}: it fails on one timestep, inputs of shapes "
                    f"{shapes} (no time axis). Expected layers that act on each timestep "
                    f"separately. Received: {type(err).__name__}: {str(err).splitlines()[0]}"
                ) from err
        if id(layer) in new_states:
            raise ValueError(
                "make_step_model does not support a recurrent layer called more "
                f"than once. Received: layer {layer.name!r}"
            )
        if kwargs.get("initial_state") is not None or len(args) > 1:
            raise ValueError(
                "make_step_model does not support recurrent layers called with "
                f"an explicit `initial_state`. Received: layer {layer.name!r}"
            )
        output, states = layer.cell(args[0], state_inputs[id(layer)])
        new_states[id(layer)] = list(states) if isinstance(states, (list, tuple)) else [states]
        return output

    # clone_model with the layers themselves (shared weights) and the states
    # as extra inputs, so that every new tensor is connected to an input.
    with_states = keras.Model(
        [*inputs, *[keras.Input(tuple(s.shape[1:]), dtype=s.dtype) for s in flat_states]],
        outputs,
    )
    stepped = keras.models.clone_model(
        with_states,
        input_tensors=[*step_inputs, *flat_states],
        clone_function=lambda layer: layer,
        call_function=call_function,
    )
    return keras.Model(
        [*step_inputs, *flat_states],
        [stepped.outputs[0], *[s for key in state_inputs for s in new_states[key]]],
        name=name or f"{model.name}_step",
    )


#: Rollout step functions (`_step_function`) of each step model, dropped with it;
#: at most `_STEPS_PER_MODEL` per model, the least recently used going first.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STEPS_PER_MODEL = 8


def _model_inputs(data: list, states: list) -> Any:
    """The step model's inputs: a list, or the one tensor of a model with one input."""
    inputs = [*data, *states]
    return inputs[0] if len(inputs) == 1 else inputs


def _steps_as_functions(step_model: keras.Model) -> bool:
    """Whether `rollout` runs `step_model` through `_step_function`: where
    `predict_on_batch` would run it the way that function does (compiled on
    JAX, in a graph on TensorFlow, eagerly on PyTorch), so the numbers are
    the same; otherwise it calls `predict_on_batch` (a model set to run
    eagerly, or on JAX one that cannot be compiled, `jit_compile=False`; on
    PyTorch one compiled with `torch.compile`, `jit_compile=True`)."""
    if step_model.run_eagerly:
        return False
    backend = keras.backend.backend()
    if backend == "jax":
        return bool(step_model.jit_compile)
    if backend == "torch":
        return not step_model.jit_compile
    return backend == "tensorflow"


def _step_function(
    step_model: keras.Model,
    dtype: str,
    *,
    validate: tuple,
    output_dim: int,
    num_mixtures: int,
    family: Family,
) -> Callable:
    """One rollout step: one compiled program on JAX and TensorFlow.

    `step(data, states, seed, temperatures) -> (x, states)`: the step
    model's inference call (as `predict_on_batch` makes it, state updates
    of its layers included) and the draw of the next input from a seed
    tensor (as an eager `sample` makes it), so the numbers are those of the
    two calls, without their per-call costs and the copies of the
    parameters and states to NumPy and back. On JAX and TensorFlow one
    program per step model and static options, traced anew per input shape
    (`jax.jit` and `tf.function` keep each); the weights are read at every
    call, so they may change between rollouts. On PyTorch the model is
    called under `torch.no_grad()` and the draw made op by op. `validate`
    is as `draw_inputs` gives it; see `_steps_as_functions` for where this
    is used.
    """
    backend = keras.backend.backend()
    # The step functions hold the model weakly: `_STEPS` holds them for as long as it lives.
    ref = weakref.ref(step_model)

    def model() -> keras.Model:
        found = ref()
        assert found is not None, "a step function outlived its model"
        return found

    # `compile()` may change how the model runs: a new function then.
    key = (dtype, validate, output_dim, num_mixtures, family, step_model.jit_compile)
    steps = _STEPS.setdefault(step_model, collections.OrderedDict())
    if key in steps:
        steps.move_to_end(key)
        return steps[key]
    options: dict[str, Any] = dict(
        validate=validate, output_dim=output_dim, num_mixtures=num_mixtures, family=family
    )
    size = noise_size(output_dim, num_mixtures, family)

    def draw(outputs: Any, seed: Tensor, temperatures: list) -> tuple:
        if backend != "torch":
            _compile.trace_counts["rollout_step"] += 1
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        shape = (*tuple(outputs[0].shape)[:-1], size)  # static in every trace
        x = _sample_draws(outputs[0], seed, *temperatures, shape=shape, **options)
        return ops.cast(x, dtype), outputs[1:]

    if backend == "jax":
        import jax

        @jax.jit
        def pure(variables: tuple, inputs: list, seed: Tensor, temperatures: list) -> tuple:
            outputs, updated = model().stateless_call(*variables, inputs, training=False)
            return draw(outputs, seed, temperatures), updated

        def step(data: list, states: list, seed: Tensor, temperatures: list) -> tuple:
            trainable = model().trainable_variables
            non_trainable = model().non_trainable_variables
            variables = ([v.value for v in trainable], [v.value for v in non_trainable])
            out, updated = pure(variables, _model_inputs(data, states), seed, temperatures)
            # What layers update in inference (their own random generators,
            # counters), written back as `predict_on_batch` does.
            for variable, value in zip(non_trainable, updated, strict=True):
                variable.assign(value)
            return out

    elif backend == "tensorflow":
        import tensorflow as tf

        def call(inputs: list) -> Any:
            return model()(inputs, training=False)

        if step_model.jit_compile:  # as `predict_on_batch` runs the model
            call = tf.function(call, jit_compile=True, autograph=False)

        @tf.function(autograph=False)  # no XLA for the draw (see `sample`)
        def step(data: list, states: list, seed: Tensor, temperatures: list) -> tuple:
            return draw(call(_model_inputs(data, states)), seed, temperatures)

    else:
        import torch

        def step(data: list, states: list, seed: Tensor, temperatures: list) -> tuple:
            with torch.no_grad():
                inputs = _model_inputs(data, states)
                return draw(model()(inputs, training=False), seed, temperatures)

    steps[key] = step
    while len(steps) > _STEPS_PER_MODEL:
        steps.popitem(last=False)
    return step


def _seed_generator(seed: Seed) -> Seed:
    """The generator a rollout draws from: a fresh one for an int seed (so the
    same int replays the same rollouts), the caller's generator (which
    advances), or None for Keras' global generator."""
    if is_int(seed):
        return keras.random.SeedGenerator(int(seed))  # type: ignore[arg-type]
    return seed


def rollout(
    step_model: keras.Model,
    first_input: Tensor,
    num_steps: int,
    output_dim: int,
    num_mixtures: int,
    *,
    actions: Optional[Tensor] = None,
    temperature: Union[float, Tensor] = 1.0,
    sigma_temperature: Union[float, Tensor] = 1.0,
    seed: Seed = None,
    initial_state: Optional[Sequence[Tensor]] = None,
    return_state: bool = False,
    component: ComponentLike = "normal",
) -> Union[Tensor, tuple]:
    """Generates sequences by feeding each sample back as the next input.

    At step `t = 0 .. num_steps - 1`, with `x_0 = first_input`:

        params_t, state = step_model([x_t, (a_t), *state])
        x_{t+1} ~ mixture(params_t)      (mdn_keras.sample)

    All rollouts in the batch run together, one `step_model` call per step.

    How `actions` reach the model: a step model with two data inputs (such as
    the one of `build_mdn_rnn`) gets `x_t` on the first and `actions[:, t]`
    on the second; one with a single data input gets `x_t`, or
    `concatenate([x_t, actions[:, t]])` when `actions` is given.

    Args:
        step_model: from `make_step_model`.
        first_input: `(batch, D)`, the first fed-back input `x_0` (for the
            MDN-RNN, the latent `z_0`).
        num_steps: number of samples to draw.
        output_dim: `D`, as given to the `MDN` layer; the fed-back input has
            this size.
        num_mixtures: `K`, as given to the `MDN` layer.
        actions: optional `(batch, num_steps, A)`, the action taken at each
            step (open loop).
        temperature: `>= 0`, divides the mixing logits (see `mdn_keras.sample`);
            `0` always takes the most probable component.
        sigma_temperature: `>= 0`, multiplies each component's variance; `0`
            takes the component mean. World Models uses the same value
            `tau` for both.
        seed: an int (the same int gives the same rollouts: it seeds a fresh
            `keras.random.SeedGenerator` that every step draws from), a
            `keras.random.SeedGenerator` (advances with every step, so
            repeated calls differ), or None (Keras' global generator).
        initial_state: optional list of `(batch, units)` tensors, one per
            state input of `step_model`; zeros by default (as in training).
            Pass the states returned with `return_state=True` to continue a
            rollout.
        return_state: also return the final states.
        component: the component family of the head (`"normal"` by default).

    Returns:
        `(batch, num_steps, D)` samples `x_1 .. x_num_steps`, a tensor of the
        active backend; with `return_state=True`, `(samples, states)`.

    Raises:
        ValueError: on inconsistent shapes, counts of inputs or states,
            temperatures or seeds.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    output_dim = check_positive_int("output_dim", output_dim)
    num_mixtures = check_positive_int("num_mixtures", num_mixtures)
    check_temperature("temperature", temperature)
    check_temperature("sigma_temperature", sigma_temperature)
    split_seed(seed)  # validates the seed's type
    family = get_family(component)

    num_states = len(step_model.outputs) - 1
    data_specs = step_model.inputs[: len(step_model.inputs) - num_states]
    state_specs = step_model.inputs[len(data_specs) :]
    if len(data_specs) not in (1, 2) or num_states < 0:
        raise ValueError(
            "Expected a step model from make_step_model with one or two data "
            f"inputs. Received: {len(step_model.inputs)} inputs and "
            f"{len(step_model.outputs)} outputs"
        )
    out_size = step_model.outputs[0].shape[-1]
    if out_size != params_size(output_dim, num_mixtures, family):
        raise ValueError(
            f"Expected the step model to output {family.layout_formula()} = "
            f"{params_size(output_dim, num_mixtures, family)} values "
            f"(component={family.name!r}). Received: "
            f"output shape {_shape_str(tuple(step_model.outputs[0].shape))}"
        )
    dtype = data_specs[0].dtype
    x = ops.convert_to_tensor(first_input, dtype=dtype)
    if len(x.shape) != 2 or x.shape[-1] != output_dim:
        raise ValueError(
            f"Expected `first_input` of shape (batch, output_dim) = (batch, {output_dim}). "
            f"Received: first_input.shape={_shape_str(tuple(x.shape))}"
        )
    batch = x.shape[0]

    if actions is not None:
        actions = ops.convert_to_tensor(actions, dtype=data_specs[-1].dtype)
        a_shape = tuple(actions.shape)
        if len(a_shape) != 3 or a_shape[0] != batch or a_shape[1] < num_steps:
            raise ValueError(
                "Expected `actions` of shape (batch, >= num_steps, action_dim) = "
                f"({batch}, >= {num_steps}, action_dim). "
                f"Received: actions.shape={_shape_str(a_shape)}"
            )
    if len(data_specs) == 2 and actions is None:
        raise ValueError(
            "The step model has two data inputs (fed-back sample, action); "
            "expected `actions` of shape (batch, num_steps, action_dim). "
            "Received: actions=None"
        )
    action_dim = 0 if actions is None else actions.shape[-1]
    if len(data_specs) == 2:
        expected = [output_dim, action_dim]
    else:
        expected = [output_dim + action_dim]
    received = [spec.shape[-1] for spec in data_specs]
    if received != expected:
        raise ValueError(
            "Expected the step model's data inputs to have last axes "
            f"{expected} (fed-back sample of size output_dim={output_dim}"
            + (f", action of size {action_dim})" if actions is not None else ")")
            + f". Received: step model input shapes "
            f"{[_shape_str(tuple(s.shape)) for s in data_specs]}"
        )

    if initial_state is None:
        states = [ops.zeros((batch, spec.shape[-1]), dtype=spec.dtype) for spec in state_specs]
    else:
        states = [
            ops.convert_to_tensor(s, dtype=spec.dtype)
            for s, spec in zip(initial_state, state_specs, strict=False)
        ]
        got = [tuple(ops.convert_to_tensor(s).shape) for s in initial_state]
        want = [(batch, spec.shape[-1]) for spec in state_specs]
        if got != want:
            raise ValueError(
                f"Expected `initial_state` to be {num_states} tensors of shapes "
                f"{[_shape_str(w) for w in want]}. Received: shapes "
                f"{[_shape_str(g) for g in got]}"
            )

    generator = _seed_generator(seed)
    step = None
    eager = [x, *states, *[v for v in (temperature, sigma_temperature) if ops.is_tensor(v)]]
    if _steps_as_functions(step_model) and (
        keras.backend.backend() == "torch" or _compile.compiles_here(*eager)
    ):
        # The draw's inputs, checked as `sample` checks them, against a stand-in for the params.
        spec = keras.KerasTensor((batch, out_size), dtype=step_model.outputs[0].dtype)
        temperatures, validate = draw_inputs(
            spec,
            per_row_value("temperature", temperature, spec),
            per_row_value("sigma_temperature", sigma_temperature, spec),
        )
        step = _step_function(
            step_model,
            dtype,
            validate=validate,
            output_dim=output_dim,
            num_mixtures=num_mixtures,
            family=family,
        )
    # Each step's actions, cut in one op (a slice per step costs an eager call each).
    step_actions = [] if actions is None else ops.unstack(actions[:, :num_steps], axis=1)
    samples = []
    for t in range(num_steps):
        if actions is None:
            data = [x]
        elif len(data_specs) == 2:
            data = [x, step_actions[t]]
        else:
            data = [ops.concatenate([x, step_actions[t]], axis=-1)]
        if step is not None:
            x, states = step(data, states, _drawn_seed(generator), temperatures)
            samples.append(x)
            continue
        # Inside a trace (`jax.jit`, `tf.function`), or a model that runs
        # eagerly (see `_steps_as_functions`): Keras' inference path, which
        # returns NumPy arrays.
        outputs = step_model.predict_on_batch(_model_inputs(data, states))
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        params = ops.convert_to_tensor(outputs[0])
        states = [ops.convert_to_tensor(s) for s in outputs[1:]]
        x = sample(
            params,
            output_dim,
            num_mixtures,
            temperature=temperature,
            sigma_temperature=sigma_temperature,
            seed=generator,
            component=family,
        )
        x = ops.cast(x, dtype)
        samples.append(x)
    result = ops.stack(samples, axis=1)
    return (result, states) if return_state else result
