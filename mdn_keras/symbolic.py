"""The package's functions on Keras symbolic tensors (functional models being built).

Most functions of `mdn_keras` are chains of `keras.ops` and build a functional
graph from a `keras.Input` like any op. Those that loop (`mixture_mode`, the
quantile bisections) or dispatch on concrete tensors cannot be traced op by
op: called with a `keras.KerasTensor`, they become one `MixtureFunction`
operation of the graph instead, which runs the function itself when the
model runs (eagerly, under `jax.jit`, in a `tf.function` or an export) and
saves and reloads with the model (`safe_mode=True` included).

    x = keras.Input((8,))
    params = mdn_keras.MDN(1, 5)(keras.layers.Dense(32, activation="tanh")(x))
    lower, upper = mdn_keras.prediction_interval(params, 0.9, 1, 5)
    model = keras.Model(x, [mdn_keras.mixture_mode(params, 1, 5), lower, upper])
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence, TypeVar

import keras
import numpy as np

from mdn_keras.families import Family
from mdn_keras.shapes import shape_str

F = TypeVar("F", bound=Callable[..., Any])

#: Public functions that accept symbolic tensors, by name (for `MixtureFunction`).
FUNCTIONS: dict[str, Callable[..., Any]] = {}


def is_symbolic(*values: Any) -> bool:
    """Whether any of `values` is a `keras.KerasTensor`."""
    return any(isinstance(v, keras.KerasTensor) for v in values)


def accepts_symbolic(fn: F) -> F:
    """Decorates a public function so that a call with a `keras.KerasTensor`
    argument returns the outputs of a `MixtureFunction` operation.

    The symbolic arguments become the operation's inputs; every other
    argument (counts, levels, the family, ...), defaults included, is kept
    in its config.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_symbolic(*args, *kwargs.values()):
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # a saved model keeps the options it was built with
        arguments = bound.arguments
        names = [n for n, v in arguments.items() if isinstance(v, keras.KerasTensor)]
        options = {n: v for n, v in arguments.items() if n not in names}
        return MixtureFunction(fn.__name__, names, options)(*(arguments[n] for n in names))

    FUNCTIONS[fn.__name__] = wrapper
    return wrapper  # type: ignore[return-value]


def refuse_symbolic(function: str, hint: str, **arguments: Any) -> None:
    """Raises a `ValueError` naming `hint` if any of `arguments` is symbolic."""
    symbolic = {n: v for n, v in arguments.items() if isinstance(v, keras.KerasTensor)}
    if symbolic:
        received = ", ".join(
            f"{n}=<KerasTensor shape={shape_str(tuple(v.shape))}>" for n, v in symbolic.items()
        )
        raise ValueError(
            f"Expected concrete tensors: `{function}` cannot be a step of a functional "
            f"model being built; {hint} Received: {received}"
        )


def _plain(value: Any) -> Any:
    """`value` in a form a Keras config holds (families serialised, arrays as lists)."""
    if isinstance(value, Family):
        return value.serialize()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or keras.ops.is_tensor(value):
        return keras.ops.convert_to_numpy(value).tolist()
    return value


@keras.saving.register_keras_serializable(package="mdn_keras")
class MixtureFunction(keras.Operation):
    """One call of an `mdn_keras` function as an operation of a functional graph.

    Made by the public functions when called with `keras.KerasTensor`
    arguments (see `mdn_keras.symbolic`); the output shapes come from
    running the function on placeholders of the inputs' shapes.

    Args:
        function: the public function's name, e.g. `"mixture_mode"`.
        tensor_names: the names of its arguments that are the operation's
            inputs, in the order they are passed to `call`.
        options: its other arguments, by name.
        name: the operation's name (default: a unique `mixture_function_<n>`).
    """

    def __init__(
        self,
        function: str,
        tensor_names: Sequence[str],
        options: Optional[dict] = None,
        name: Optional[str] = None,
    ) -> None:
        if function not in FUNCTIONS:
            raise ValueError(
                f"Expected `function` to be one of {sorted(FUNCTIONS)}. Received: {function!r}"
            )
        super().__init__(name=name)
        self.function = function
        self.tensor_names = list(tensor_names)
        self.options = dict(options or {})

    def call(self, *tensors: Any) -> Any:
        arguments = dict(zip(self.tensor_names, tensors, strict=True))
        return FUNCTIONS[self.function](**arguments, **self.options)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "function": self.function,
            "tensor_names": list(self.tensor_names),
            "options": {n: _plain(v) for n, v in self.options.items()},
        }
