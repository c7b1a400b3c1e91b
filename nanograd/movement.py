"""Ops that move, select or combine elements without doing arithmetic on them.

Their backward passes route each gradient element back to where its value came from: undo a
reshape or transpose, scatter into the indexed positions, split a concatenation, stack the pieces of
an unbind. They are attached to Tensor as methods at the bottom of this module (reshape is defined in
tensor.py itself); `cat`, `stack` and `where` are functions.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, check_axis


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

    def backward(g):
        """Zeros but at x[index], which gets g (summed where an index array repeats a position)."""
        grad = np.zeros_like(x.data)
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, (np.ndarray, list)) for p in parts):  # an index array may name a position twice
            np.add.at(grad, index, g)
        else:
            grad[index] = g
        return (grad,)

    return Tensor.from_op(np.asarray(out), (x,), backward, "getitem")


def unbind(x: Tensor, axis: int = 0) -> tuple:
    """x split along `axis` into its x.shape[axis] slices, in order: a tuple of tensors of x's shape without
    that axis (`q, k, v = qkv.unbind(0)`), each a view into x's data, as x[i] is.

    One op with several outputs: x -> `whole` (the op's node, a view of x) -> the pieces. Backward stacks the
    pieces' gradients back along `axis`, zeros for a piece that got none, into `whole.grad`: the first piece
    whose backward runs makes that array and hands it to `whole`, the others write their slots into it. They
    all run before `whole`'s backward, since they are its only children, which then passes the stack to x."""
    check_axis(axis, x.ndim, x.shape)
    before = (slice(None),) * (axis % x.ndim)  # x[before + (i,)] is slice i along `axis`
    whole = Tensor.from_op(x.data, (x,), lambda g: (g,), "unbind")

    def piece(i):
        def backward(g):
            if whole.grad is not None:  # an array this op made, not shared: safe to write into
                whole.grad[before + (i,)] = g
                return (None,)
            grad = np.zeros_like(x.data)  # x's memory layout, so a transpose before unbind is undone for free
            grad[before + (i,)] = g
            return (grad,)

        return Tensor.from_op(x.data[before + (i,)], (whole,), backward, "unbind")

    return tuple(piece(i) for i in range(x.shape[axis]))


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
Tensor.unbind = unbind


def _not_iterable(self):
    raise TypeError(f"a Tensor is not iterable: split one of shape {self.shape} into tensors with .unbind(axis)")


# Without this, Python would iterate through __getitem__ until an IndexError: `a, b = t` would build a
# getitem per row behind the reader's back. Unpacking is spelled out instead: `a, b = t.unbind(0)`.
Tensor.__iter__ = _not_iterable
