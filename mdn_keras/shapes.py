"""Shape helpers shared by every module: static-where-known leading shapes,
shape strings for error messages, and the split of the flat last axis."""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator, Optional, Sequence, Union

import keras
from keras import ops

from mdn_keras.types import Shape, Tensor

Axis = Union[int, tuple[int, ...]]


def shape_str(shape: Shape) -> str:
    """`(4,)`, `(4, 15)`, `(None, 3)`: a shape as NumPy prints it."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def lead_shape(x: Tensor, n_trailing: int) -> tuple:
    """`x.shape` without its last `n_trailing` axes, in a form `ops.reshape` takes.

    Static where known; one unknown axis becomes -1; several use the dynamic shape.
    """
    static = tuple(x.shape)[: len(x.shape) - n_trailing]
    unknown = sum(dim is None for dim in static)
    if unknown == 0:
        return static
    if unknown == 1:
        return tuple(-1 if dim is None else dim for dim in static)
    return tuple(ops.shape(x))[: len(static)]


def reshape(x: Tensor, shape: Sequence[Any]) -> Tensor:
    """`ops.reshape(x, shape)`; on a PyTorch tensor `Tensor.reshape` directly.

    Keras' front end checks the shape and looks for symbolic tensors in it:
    on PyTorch about 50 us a call against 3 us, several times per training
    step of an MDN head (each family part is reshaped to `(..., K, D)`).
    """
    if keras.backend.backend() == "torch":
        import torch

        if isinstance(x, torch.Tensor) and all(isinstance(d, int) for d in shape):
            return x.reshape(tuple(shape))
    return ops.reshape(x, tuple(shape))


def merge_last(x: Tensor, n: int) -> Tensor:
    """`x` with its last `n` axes merged into one, `(..., a, b) -> (..., a * b)`.

    The merged size is static where those axes are known, so one unknown
    leading axis (a functional model's batch) is left to `reshape`.
    """
    tail = tuple(x.shape)[len(x.shape) - n :]
    size = math.prod(tail) if all(d is not None for d in tail) else -1
    return reshape(x, (*lead_shape(x, n), size))


#: Attribute of a PyTorch tensor made by `concat_last`:
#: `(version, sizes, blocks, grad_fn, data_ptr)`.
_BLOCKS = "_mdn_keras_blocks"

_REUSE_BLOCKS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mdn_keras_reuse_blocks", default=False
)


@contextlib.contextmanager
def reusing_blocks() -> Iterator[None]:
    """Within it, `split_last` of a concatenate into the same blocks returns
    those blocks: the inputs of a TensorFlow graph's concatenate, or those a
    PyTorch `concat_last` result kept.

    For `MDNLoss` on the `MDN` layer's output: the loss differentiates the
    layer's blocks directly, with no split forward and no concatenate of its
    gradient (XLA cancels the pair by itself). The loss then does not read
    the flat output itself, so a derivative with respect to that tensor (as
    opposed to the weights) is not defined there; `mdn_nll` always reads it.
    """
    token = _REUSE_BLOCKS.set(True)
    try:
        yield
    finally:
        _REUSE_BLOCKS.reset(token)


def concat_last(blocks: Sequence[Tensor]) -> Tensor:
    """Concatenates `blocks` along the last axis; within `reusing_blocks`,
    `split_last` of the result into the same sizes returns `blocks`.

    On PyTorch a result that requires grad keeps them, with its version
    counter, autograd node and storage, so a change of the result in place,
    `detach_()` or a new `.data` make `split_last` split it instead (a
    change through `.data`, which autograd does not see either, is not
    detected). TensorFlow graphs need nothing kept (`_concatenated_blocks`).
    """
    out = ops.concatenate(list(blocks), axis=-1)
    # Only where a derivative will be taken: elsewhere the split is cheap
    # views, and kept blocks would hold memory as long as the result lives.
    if keras.backend.backend() == "torch" and out.requires_grad:
        try:
            data_ptr = out.data_ptr()
        except RuntimeError:  # traced (`torch.export`, `torch.compile`): no storage
            return out
        sizes = tuple(int(b.shape[-1]) for b in blocks)
        kept = (out._version, sizes, tuple(blocks), out.grad_fn, data_ptr)
        setattr(out, _BLOCKS, kept)
    return out


def _kept_blocks(x: Any, sizes: list[int]) -> Optional[tuple]:
    """The blocks `concat_last` kept on the PyTorch tensor `x`, where `x` is
    unchanged since and `sizes` are theirs (within `reusing_blocks`); else None."""
    kept = getattr(x, _BLOCKS, None) if _REUSE_BLOCKS.get() else None
    if kept is None:
        return None
    version, kept_sizes, blocks, grad_fn, data_ptr = kept
    unchanged = x._version == version and x.grad_fn is grad_fn and x.data_ptr() == data_ptr
    return blocks if unchanged and kept_sizes == tuple(sizes) else None


def split_last(x: Tensor, sizes: Sequence[int], contiguous: bool = False) -> list:
    """Splits the last axis of `x` into consecutive blocks of the given sizes.

    One split op (not one strided slice per block): its gradient is a single
    concatenate, which XLA cancels against the layer's concatenate, instead of
    one zero-padded full-size buffer per slice. On PyTorch, `torch.split`
    directly (Keras' `ops.split` with an index list costs ~10x more per call);
    on TensorFlow, `tf.split` with the static sizes (Keras' computes them from
    the run-time shape: eight more small ops per split in a graph).

    `contiguous=True` (for blocks that go on to `log` or `exp`): on PyTorch
    each block is copied into its own memory. PyTorch's CPU kernels of those
    functions are vectorised only over contiguous memory: on a block of
    columns they run ~5x slower (`log` of a `(1024, 160)` block of a
    `(1024, 325)` tensor: 0.67 ms, against 0.16 ms copy included). The
    copy's gradient is the incoming one, so the backward pass is unchanged.
    Other backends' splits already return blocks of their own.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) == 1:
        return [x]
    if keras.backend.backend() == "torch":
        import torch

        if isinstance(x, torch.Tensor):
            blocks = _kept_blocks(x, sizes) or torch.split(x, sizes, dim=-1)
            return [b.contiguous() for b in blocks] if contiguous else list(blocks)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.is_tensor(x) and x.shape[-1] == sum(sizes):
            found = _concatenated_blocks(x, sizes) if _REUSE_BLOCKS.get() else None
            return found if found is not None else tf.split(x, sizes, axis=-1)
    bounds = []
    total = 0
    for size in sizes[:-1]:
        total += size
        bounds.append(total)
    return list(ops.split(x, bounds, axis=-1))


def _concatenated_blocks(x: Any, sizes: list[int]) -> Optional[list]:
    """In a TensorFlow graph, the inputs of the concatenate that made `x`, where
    they are blocks of `sizes` along its last axis; else None.

    The split of a concatenate of the same blocks is those blocks. XLA
    cancels the pair; TensorFlow's graph runtime (Keras' CPU training step)
    would copy the blocks twice forward and twice again in the gradient
    (see `reusing_blocks`).
    """
    op = getattr(x, "op", None)  # eager tensors have no producing op
    if op is None or op.type != "ConcatV2" or len(op.inputs) != len(sizes) + 1:
        return None
    import tensorflow as tf

    axis = tf.get_static_value(op.inputs[-1])
    rank = x.shape.rank
    if axis is None or rank is None or int(axis) not in (-1, rank - 1):
        return None
    blocks = list(op.inputs[:-1])
    for block, size in zip(blocks, sizes, strict=True):
        if block.shape.rank != rank or block.shape[-1] != size:
            return None
    return blocks


def reduce_max(x: Tensor, axis: Axis, keepdims: bool = False) -> Tensor:
    """`ops.amax` over non-empty `axis`, also for a batch of no rows.

    Keras' `max` and `min` raise for any tensor with no elements on PyTorch
    (and on TensorFlow, eagerly), even where the reduced axes are not empty
    and the result is just as empty; the sum has that result's shape.
    """
    if 0 in tuple(x.shape):
        return ops.sum(x, axis=axis, keepdims=keepdims)
    return ops.amax(x, axis=axis, keepdims=keepdims)


def reduce_min(x: Tensor, axis: Axis, keepdims: bool = False) -> Tensor:
    """`ops.amin` over non-empty `axis`, also for a batch of no rows (see `reduce_max`)."""
    if 0 in tuple(x.shape):
        return ops.sum(x, axis=axis, keepdims=keepdims)
    return ops.amin(x, axis=axis, keepdims=keepdims)
