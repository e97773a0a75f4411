"""Shape helpers shared by every module: static-where-known leading shapes,
shape strings for error messages, and the split of the flat last axis."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

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


def merge_last(x: Tensor, n: int) -> Tensor:
    """`x` with its last `n` axes merged into one, `(..., a, b) -> (..., a * b)`.

    The merged size is static where those axes are known, so one unknown
    leading axis (a functional model's batch) is left to `reshape`.
    """
    tail = tuple(x.shape)[len(x.shape) - n :]
    size = math.prod(tail) if all(d is not None for d in tail) else -1
    return ops.reshape(x, (*lead_shape(x, n), size))


#: Attribute of a PyTorch tensor made by `concat_last`: `(version, sizes, blocks)`.
_BLOCKS = "_mdn_keras_blocks"


def concat_last(blocks: Sequence[Tensor]) -> Tensor:
    """Concatenates `blocks` along the last axis; `split_last` of the result
    into the same sizes returns `blocks` themselves.

    On TensorFlow `split_last` finds them in the graph (`_concatenated_blocks`);
    on PyTorch a result that requires grad keeps them, with its version
    counter, so an in-place change of the result makes `split_last` split
    it instead. The
    loss then differentiates the layer's blocks directly: no split forward
    and no concatenate of its gradient (XLA cancels the pair by itself).
    """
    out = ops.concatenate(list(blocks), axis=-1)
    # Only where a derivative will be taken: elsewhere the split is cheap
    # views, and kept blocks would hold memory as long as the result lives.
    if keras.backend.backend() == "torch" and out.requires_grad:
        sizes = tuple(int(b.shape[-1]) for b in blocks)
        setattr(out, _BLOCKS, (out._version, sizes, tuple(blocks)))
    return out


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
            kept = getattr(x, _BLOCKS, None)
            if kept is not None and kept[0] == x._version and kept[1] == tuple(sizes):
                blocks = kept[2]
            else:
                blocks = torch.split(x, sizes, dim=-1)
            return [b.contiguous() for b in blocks] if contiguous else list(blocks)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.is_tensor(x) and x.shape[-1] == sum(sizes):
            blocks = _concatenated_blocks(x, sizes)
            return blocks if blocks is not None else tf.split(x, sizes, axis=-1)
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
    would copy the blocks twice forward and twice again in the gradient.
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
