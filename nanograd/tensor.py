"""The Tensor: an ndarray that remembers how it was made, so gradients can flow back through it.

Every op below builds its output with `Tensor.from_op(data, parents, backward, op)`. `backward` is a
function from the output's gradient to one gradient per parent (None where a parent needs none).
`Tensor.backward()` visits the graph in reverse topological order, calls each op's `backward`,
and accumulates the results into the parents in one place, `_accumulate`, which also undoes
broadcasting. So each op only states its own calculus, right next to its forward:

    out = a * b          ->   backward(g) = (g * b, g * a)

Ops that only move elements (transpose, indexing, cat, ...) live in `movement.py`, which also makes
them Tensor methods; fused neural-network ops (softmax, layer norm, attention, ...) in `functional.py`.
"""
from __future__ import annotations

import contextlib

import numpy as np


_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block, ops build no graph: for evaluation and sampling."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` down to `shape`, undoing NumPy broadcasting.

    Broadcasting copies a value along new leading axes and along axes of size 1; the gradient of
    a copy is the sum of the gradients of its copies.
    """
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _as_array(value, dtype=None) -> np.ndarray:
    if type(value) is np.ndarray and dtype is None:  # the common case (every op's output), first
        return value
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (np.ndarray, np.generic)):
        # NumPy scalars too: arithmetic on 0-d arrays returns them, and they must keep their dtype.
        return np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    # Python numbers and lists: float32 unless the other operand says otherwise.
    return np.asarray(value, dtype=dtype or np.float32)


def check_axis(axis, ndim: int, shape: tuple) -> None:
    """Raise a clear error for an axis (int or tuple) that `shape` does not have."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -max(ndim, 1) <= a < max(ndim, 1):
            raise ValueError(f"axis {axis} is out of range for a tensor of shape {shape}")


class Tensor:
    """An n-dimensional array with an optional gradient.

    Tensor(data, requires_grad=False): float ndarrays keep their dtype (float32 and float64 both
    work end to end); Python numbers and lists become float32; integer arrays stay integer and
    cannot require a gradient.
    """

    __array_priority__ = 100  # so `ndarray * Tensor` calls Tensor.__rmul__, not NumPy's loop

    def __init__(self, data, requires_grad: bool = False):
        self.data = _as_array(data)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.data.dtype}")
        self.requires_grad = requires_grad
        self.grad, self._parents, self._backward = None, (), None  # no graph until an op records one
        self._retains_grad = False
        self._owns_grad = False  # whether self.grad is an array this tensor made, safe to add into in place
        self._freed = False
        self.op = ""  # the name of the op that made this tensor ("" for a leaf), for printing and drawing

    @classmethod
    def from_op(cls, data, parents, backward, op: str) -> "Tensor":
        """The output `data` of an op on `parents`, labelled `op` (kept in .op): records the parents and `backward`
        (output gradient -> one gradient per parent) only when a gradient is wanted."""
        out = cls(data)
        out.op = op
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad, out._parents, out._backward = True, parents, backward
        return out

    # --- properties ---------------------------------------------------------------------------

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def item(self):
        return self.data.item()

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> "Tensor":
        """The same data, cut off from the graph."""
        return Tensor(self.data)

    def retain_grad(self) -> "Tensor":
        """Keep this non-leaf tensor's .grad after backward (leaves always keep theirs)."""
        self._retains_grad = True
        return self

    @property
    def is_leaf(self) -> bool:
        # A freed interior node is no leaf: reaching it again must raise, not stop the gradient.
        return self._backward is None and not self._freed

    # --- backpropagation ----------------------------------------------------------------------

    def _accumulate(self, grad) -> None:
        """Add `grad` (an array, summed back to our shape if broadcast) into self.grad.
        An array handed in may be another node's too (`+` hands one to both inputs), so it is never written
        to: the first is kept as it is, and sums go into an array of our own. A leaf keeps a copy from the
        start: optimizers and clip_grad_norm_ scale leaf gradients in place."""
        grad = np.asarray(grad)
        if grad.dtype != self.dtype:
            grad = grad.astype(self.dtype)
        if grad.shape != self.shape:
            grad = unbroadcast(grad, self.shape)
        assert grad.shape == self.shape, f"gradient of shape {grad.shape} for a tensor of shape {self.shape}"
        if self.grad is None:
            self.grad, self._owns_grad = (grad.copy(), True) if self.is_leaf else (grad, False)
        elif self._owns_grad:
            self.grad += grad
        else:
            self.grad, self._owns_grad = self.grad + grad, True

    def backward(self, grad=None) -> None:
        """Backpropagate from this tensor into every leaf that requires grad.

        A scalar needs no `grad`; any other tensor needs one of its own shape. The graph is freed
        as it is walked (each op's saved arrays are released), so call backward once per forward.
        """
        if self._freed:
            raise RuntimeError("backward through a graph that was already freed: run the forward pass again "
                               "before calling backward a second time")
        if not self.requires_grad:
            raise RuntimeError("backward on a tensor that does not require grad: no input had requires_grad=True, "
                               "or it was computed under no_grad()")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward on a non-scalar tensor of shape {self.shape} needs grad=... "
                                   "of that shape (or reduce it first, e.g. with .sum())")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"grad of shape {grad.shape} given for a tensor of shape {self.shape}")

        order = self._topological_order()
        self._accumulate(grad)
        for node in reversed(order):
            if node.is_leaf:
                continue
            if node._freed:
                raise RuntimeError("backward reached a graph that was already freed: run the forward pass again")
            if node.grad is not None:
                for parent, parent_grad in zip(node._parents, node._backward(node.grad)):
                    if parent_grad is not None and parent.requires_grad:
                        parent._accumulate(parent_grad)
            # Free the op's closure (and the activations it saved) as soon as it has been used.
            node._backward, node._parents, node._freed = None, (), True
            if node is not self and not node._retains_grad:
                node.grad = None

    def _topological_order(self) -> list:
        """Nodes ordered so that every node comes after its parents (iterative: no recursion limit)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in visited)
        return order

    # --- elementwise arithmetic (broadcasting; `_accumulate` sums gradients back to shape) -------

    def _lift(self, other) -> "Tensor":
        """Wrap a Python number or array so it takes part in an op without changing our dtype."""
        if isinstance(other, Tensor):
            return other
        return Tensor(_as_array(other, self.dtype if np.isscalar(other) else None))

    def _check_broadcast(self, other: "Tensor", op: str) -> None:
        if self.data.shape != other.data.shape:
            try:
                np.broadcast_shapes(self.shape, other.shape)
            except ValueError:
                raise ValueError(f"{op}: shapes {self.shape} and {other.shape} do not broadcast") from None

    def __add__(self, other):
        other = self._lift(other)
        self._check_broadcast(other, "+")
        return Tensor.from_op(self.data + other.data, (self, other), lambda g: (g, g), "+")

    def __sub__(self, other):
        other = self._lift(other)
        self._check_broadcast(other, "-")
        return Tensor.from_op(self.data - other.data, (self, other), lambda g: (g, -g), "-")

    def __mul__(self, other):
        other = self._lift(other)
        self._check_broadcast(other, "*")
        a, b = self.data, other.data
        return Tensor.from_op(a * b, (self, other), lambda g: (g * b, g * a), "*")

    def __truediv__(self, other):
        other = self._lift(other)
        self._check_broadcast(other, "/")
        a, b = self.data, other.data
        return Tensor.from_op(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)), "/")

    def __neg__(self):
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,), "neg")

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not np.isscalar(exponent):
            raise TypeError("Tensor ** x supports a Python number x only; use exp(log(a) * b) for tensor powers")
        a = self.data
        return Tensor.from_op(a ** exponent, (self,), lambda g: (g * exponent * a ** (exponent - 1),), f"**{exponent}")

    def __radd__(self, other):
        return self + other

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rmul__(self, other):
        return self * other

    def __rtruediv__(self, other):
        return self._lift(other) / self

    # --- shape ----------------------------------------------------------------------------------

    def reshape(self, *shape) -> "Tensor":
        """The same elements in a new shape (one size may be -1); the gradient is reshaped back."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {self.shape} ({self.size} elements) "
                             f"into {shape}") from None
        return Tensor.from_op(out, (self,), lambda g: (g.reshape(self.shape),), "reshape")

    # --- matrix product ------------------------------------------------------------------------

    def __matmul__(self, other):
        """np.matmul semantics: 1-D, 2-D, and batched N-D with broadcast batch dims."""
        other = self._lift(other)
        a, b = self.data, other.data
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"@: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        inner_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if a.shape[-1] != inner_b:
            raise ValueError(f"@: shapes {a.shape} and {b.shape} are not aligned ({a.shape[-1]} != {inner_b})")
        if a.ndim == 1 or b.ndim == 1:
            # A 1-D left operand is a row, a 1-D right operand a column; their unit axes are dropped.
            out = (self.reshape(1, -1) if a.ndim == 1 else self) @ (other.reshape(-1, 1) if b.ndim == 1 else other)
            dropped = {out.ndim - 2} if a.ndim == 1 else set()
            dropped |= {out.ndim - 1} if b.ndim == 1 else set()
            return out.reshape(tuple(n for i, n in enumerate(out.shape) if i not in dropped))
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"@: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None

        if b.ndim == 2 and a.ndim > 2:
            # (..., T, C) @ (C, O) is one GEMM on the rows folded together: NumPy would loop over the batch.
            rows = self.reshape(-1, a.shape[-1]) @ other
            return rows.reshape(a.shape[:-1] + (b.shape[-1],))

        def backward(g):
            grad_a = g @ np.swapaxes(b, -1, -2) if self.requires_grad else None
            grad_b = np.swapaxes(a, -1, -2) @ g if other.requires_grad else None
            return grad_a, grad_b

        return Tensor.from_op(a @ b, (self, other), backward, "@")

    def __rmatmul__(self, other):
        return self._lift(other) @ self

    # --- reductions ----------------------------------------------------------------------------

    def _expand_reduced(self, g, axis, keepdims):
        """Give a reduced array its reduced axes back (as size 1), ready to broadcast against self."""
        if keepdims:
            return g
        if axis is None:
            return np.reshape(g, (1,) * self.ndim)
        return np.expand_dims(g, axis)

    def sum(self, axis=None, keepdims=False):
        if axis is not None:
            check_axis(axis, self.ndim, self.shape)
        shape = self.shape
        out = np.asarray(self.data.sum(axis=axis, keepdims=keepdims))
        return Tensor.from_op(out, (self,),
                              lambda g: (np.broadcast_to(self._expand_reduced(g, axis, keepdims), shape),), "sum")

    def mean(self, axis=None, keepdims=False):
        if axis is not None:
            check_axis(axis, self.ndim, self.shape)
        axes = range(self.ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / max(count, 1))

    def max(self, axis=None, keepdims=False):
        """Gradient goes to the maximal elements, split evenly between ties."""
        if axis is not None:
            check_axis(axis, self.ndim, self.shape)
        a = self.data
        out = np.asarray(a.max(axis=axis, keepdims=keepdims))

        def backward(g):
            is_max = a == self._expand_reduced(out, axis, keepdims)
            share = is_max / is_max.sum(axis=axis, keepdims=True)
            return (share * self._expand_reduced(g, axis, keepdims),)

        return Tensor.from_op(out, (self,), backward, "max")

    # --- elementwise functions -----------------------------------------------------------------

    def exp(self):
        out = np.exp(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * out,), "exp")

    def log(self):
        a = self.data
        return Tensor.from_op(np.log(a), (self,), lambda g: (g / a,), "log")

    def tanh(self):
        out = np.tanh(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self):
        out = 0.5 * (1.0 + np.tanh(0.5 * self.data))  # = 1 / (1 + exp(-x)), with no exp to overflow
        return Tensor.from_op(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def relu(self):
        a = self.data
        return Tensor.from_op(np.maximum(a, 0), (self,), lambda g: (g * (a > 0),), "relu")

    def sqrt(self):
        out = np.sqrt(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g / (2 * out),), "sqrt")
