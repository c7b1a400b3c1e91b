"""Ops that move, select or combine elements without doing arithmetic on them.

Their backward passes route each gradient element back to where its value came from: undo a
reshape or transpose, scatter into the indexed positions, split a concatenation. They are attached
to Tensor as methods at the bottom of this module (reshape is defined in tensor.py itself); `cat`,
`stack` and `where` are functions.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, check_axis


class IndexedGrad:
    """The gradient of x[index] alone, from indexing's backward: `_accumulate` adds it into that part of x's
    gradient, rather than take a zero-filled array of x's size per index (gpt/model.py unpacks q, k, v)."""

    def __init__(self, index, grad):
        self.index, self.grad = index, grad

    def add_into(self, target: np.ndarray) -> None:
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        if any(isinstance(p, (np.ndarray, list)) for p in parts):
            np.add.at(target, self.index, self.grad)  # an index array may name a position twice: add each
        else:
            target[self.index] += self.grad


def transpose(x: Tensor, *axes) -> Tensor:
    """Permute axes (all of them, like np.transpose); no axes reverses them."""
    axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    n = x.data.ndim
    axes = tuple(a % n for a in axes) if axes else tuple(range(n - 1, -1, -1))
    if sorted(axes) != list(range(n)):
        raise ValueError(f"transpose axes {axes} are not a permutation of the {n} axes of shape {x.shape}")
    inverse = tuple(sorted(range(n), key=axes.__getitem__))  # where each axis went, to send it back
    return Tensor.from_op(x.data.transpose(axes), (x,), lambda g: (g.transpose(inverse),), "transpose")


def getitem(x: Tensor, index) -> Tensor:
    """x[index] for ints, slices, None, Ellipsis, and integer or boolean arrays."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        out = x.data[index]
    except IndexError as err:
        raise IndexError(f"index {index!r} is invalid for a tensor of shape {x.shape}: {err}") from None

    # Backward: only x[index] gets a gradient, added into that part of x's gradient (see IndexedGrad).
    return Tensor.from_op(np.asarray(out), (x,), lambda g: (IndexedGrad(index, g),), "getitem")


def masked_fill(x: Tensor, mask, value) -> Tensor:
    """Where `mask` is true, replace with `value`; those positions get no gradient."""
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
    try:
        out = np.where(mask, np.asarray(value, dtype=x.dtype), x.data)
    except ValueError:
        raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {x.shape}") from None
    return Tensor.from_op(out, (x,), lambda g: (np.where(mask, 0, g),), "masked_fill")


def cat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat needs at least one tensor")
    check_axis(axis, tensors[0].ndim, tensors[0].shape)
    try:
        out = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise ValueError(f"cat along axis {axis}: shapes {[t.shape for t in tensors]} differ off that axis") from None
    split_at = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return Tensor.from_op(out, tuple(tensors), lambda g: tuple(np.split(g, split_at, axis=axis)), "cat")


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack needs tensors of one shape, got {[t.shape for t in tensors]}")
    check_axis(axis, tensors[0].ndim + 1, tensors[0].shape)
    out = np.stack([t.data for t in tensors], axis=axis)
    return Tensor.from_op(out, tuple(tensors),
                         lambda g: tuple(np.squeeze(part, axis) for part in np.split(g, len(tensors), axis=axis)),
                         "stack")


def where(condition, a, b) -> Tensor:
    """Elementwise `a` where `condition` is true, else `b` (broadcasting all three)."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    a = a if isinstance(a, Tensor) else Tensor(np.asarray(a, dtype=b.dtype if isinstance(b, Tensor) else None))
    b = b if isinstance(b, Tensor) else Tensor(np.asarray(b, dtype=a.dtype))
    try:
        out = np.where(condition, a.data, b.data)
    except ValueError:
        raise ValueError(f"where: shapes {condition.shape}, {a.shape} and {b.shape} do not broadcast") from None
    return Tensor.from_op(out, (a, b), lambda g: (np.where(condition, g, 0), np.where(condition, 0, g)), "where")


Tensor.transpose = transpose
Tensor.T = property(lambda self: transpose(self))
Tensor.__getitem__ = getitem
Tensor.masked_fill = masked_fill
Tensor.__iter__ = lambda self: (getitem(self, i) for i in range(len(self)))  # a, b = t: its rows
