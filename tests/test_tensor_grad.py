"""Every differentiable Tensor op against central finite differences, on generated shapes and values.

Tolerances: gradcheck's defaults (atol 1e-6, rtol 1e-4) in float64 with eps 1e-6. The central
difference's truncation error is O(eps^2 f''') ~ 1e-12 and its rounding error ~1e-16 |f| / eps
~ 1e-10 |f| for the small, bounded values generated here, so a correct backward passes with
orders of magnitude to spare and a wrong one (errors of order |grad|) fails.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import nanograd
from nanograd import Tensor, gradcheck


def arrays(shape, low=-2.0, high=2.0, unique=False):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False), unique=unique)


def leaf(a):
    return Tensor(np.array(a, dtype=np.float64), requires_grad=True)


def check(fn, *values):
    return gradcheck(fn, [leaf(v) for v in values])


def away_from(values, point, margin=1e-3):
    """Keep finite differences (step 1e-6) off a kink at `point`."""
    return np.where(np.abs(values - point) < margin, point + margin, values)


two_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


@given(two_shapes.flatmap(lambda s: st.tuples(arrays(s.input_shapes[0]), arrays(s.input_shapes[1]))),
       st.sampled_from(["+", "-", "*"]))
def test_add_sub_mul_broadcast(pair, op):
    a, b = pair
    fn = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}[op]
    assert check(fn, a, b)


@given(two_shapes.flatmap(lambda s: st.tuples(arrays(s.input_shapes[0]), arrays(s.input_shapes[1], 0.5, 2.0))))
def test_div_broadcast(pair):
    assert check(lambda x, y: x / y, *pair)


@given(arrays(hnp.array_shapes(min_dims=0, max_dims=3, max_side=3), 0.5, 2.0),
       st.sampled_from([-1.5, -1, 0.5, 2, 3]))
def test_pow_scalar(a, exponent):
    assert check(lambda x: x ** exponent, a)


@given(arrays(hnp.array_shapes(max_dims=2, max_side=3), 0.5, 2.0))
def test_reflected_ops(a):
    other = np.linspace(-1, 1, a.size).reshape(a.shape)
    assert check(lambda x: 2.0 - x + 3.0 / x + other * x - (-x) + 1.0 + x * 0.5, a)


@st.composite
def matmul_operands(draw):
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["vv", "vm", "mv", "mm", "batched"]))
    if kind == "vv":
        shapes = (k,), (k,)
    elif kind == "vm":
        shapes = (k,), draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=2)) + (k, m)
    elif kind == "mv":
        shapes = draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=2)) + (n, k), (k,)
    elif kind == "mm":
        shapes = (n, k), (k, m)
    else:
        batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
        shapes = batch.input_shapes[0] + (n, k), batch.input_shapes[1] + (k, m)
    return draw(arrays(shapes[0])), draw(arrays(shapes[1]))


@given(matmul_operands())
def test_matmul(operands):
    a, b = operands
    assert np.allclose((leaf(a) @ leaf(b)).data, np.matmul(a, b))
    assert check(lambda x, y: x @ y, a, b)


axes = st.one_of(st.none(), st.integers(-3, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)).filter(
    lambda t: t[0] != t[1]))


@given(arrays(st.just((2, 3, 4))), axes, st.booleans(), st.sampled_from(["sum", "mean"]))
def test_sum_mean(a, axis, keepdims, name):
    expected = getattr(np, name)(a, axis=axis, keepdims=keepdims)
    assert np.allclose(getattr(leaf(a), name)(axis=axis, keepdims=keepdims).data, expected)
    assert check(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), a)


@given(arrays(st.just((2, 3, 4)), unique=True), axes, st.booleans())
def test_max(a, axis, keepdims):
    # Unique values spaced far wider than eps: the max is differentiable at every generated point.
    a = np.argsort(np.argsort(a.ravel())).reshape(a.shape) * 0.1 + a * 1e-3
    assert np.allclose(leaf(a).max(axis=axis, keepdims=keepdims).data, a.max(axis=axis, keepdims=keepdims))
    assert check(lambda x: x.max(axis=axis, keepdims=keepdims), a)


def test_max_splits_gradient_between_ties():
    x = leaf([1.0, 3.0, 3.0])
    x.max().backward()
    assert np.array_equal(x.grad, [0.0, 0.5, 0.5])


@given(arrays(hnp.array_shapes(min_dims=0, max_dims=3, max_side=3), 0.2, 3.0), st.sampled_from(["exp", "log", "sqrt"]))
def test_positive_domain_functions(a, name):
    assert check(lambda x: getattr(x, name)(), a)


@given(arrays(hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)), st.sampled_from(["tanh", "relu"]))
def test_tanh_relu(a, name):
    assert check(lambda x: getattr(x, name)(), away_from(a, 0.0))


@given(arrays(st.just((2, 3, 4))), st.permutations([0, 1, 2]),
       st.sampled_from([(24,), (4, 6), (2, 12), (3, 2, 2, 2), (-1, 4)]))
def test_reshape_transpose(a, perm, shape):
    assert check(lambda x: x.transpose(*perm).reshape(shape) * np.arange(24).reshape(shape), a)
    assert check(lambda x: x.T * 2.0, a)


@given(arrays(st.just((4, 5))), st.sampled_from([
    (1,), (slice(1, 3),), (slice(None), 2), (-1, slice(None, None, 2)), (Ellipsis, 1), (None, 2),
    (np.array([0, 2, 2, 3]),), (slice(None), np.array([4, 4, 0])), (np.array([1, 1]), np.array([0, 0])),
]))
def test_getitem(a, index):
    index = index if len(index) > 1 else index[0]
    assert np.array_equal(leaf(a)[index].data, a[index])
    assert check(lambda x: x[index] * 3.0, a)


def test_getitem_repeated_index_scatter_adds():
    x = leaf(np.zeros(3))
    x[np.array([0, 2, 2, 2])].sum().backward()
    assert np.array_equal(x.grad, [1.0, 0.0, 3.0])


@given(arrays(st.just((3, 4))), hnp.arrays(bool, (3, 4)))
def test_masked_fill(a, mask):
    out = leaf(a).masked_fill(mask, -5.0)
    assert np.array_equal(out.data, np.where(mask, -5.0, a))
    assert check(lambda x: x.masked_fill(mask, -5.0) * a, a)


@given(arrays(st.just((2, 3))), arrays(st.just((2, 1))), arrays(st.just((2, 2))))
def test_cat_stack_where(a, b, c):
    assert check(lambda x, y, z: nanograd.cat([x, y, z], axis=1) * np.arange(12).reshape(2, 6), a, b, c)
    assert check(lambda x, y: nanograd.stack([x, y * 2.0], axis=-1) * np.arange(12).reshape(2, 3, 2), a, a + 1)
    condition = a > 0
    assert check(lambda x, y: nanograd.where(condition, x, y) * a, a, b)


@given(arrays(st.just((3, 2, 4))), st.sampled_from([(0, 1, 2), (1, 0, 2), (2, 0, 1)]), st.sampled_from([0, 1, -1]))
def test_unbind_yields_views_and_stacks_their_gradients_back(a, perm, axis):
    """unbind(axis) gives x's slices along axis (`q, k, v = qkv.unbind(0)`), each a view into x's data as
    x[i] is; backward stacks their gradients back, zeros for a piece that got none."""
    x = leaf(a).transpose(*perm)
    pieces = x.unbind(axis)
    want = np.moveaxis(a.transpose(perm), axis, 0)
    assert isinstance(pieces, tuple) and len(pieces) == len(want)
    for piece, w in zip(pieces, want):
        assert np.array_equal(piece.data, w) and np.shares_memory(piece.data, x.data)
    weights = [np.arange(w.size, dtype=np.float64).reshape(w.shape) + i for i, w in enumerate(want)]
    assert check(lambda t: nanograd.stack([p * w for p, w in zip(t.transpose(*perm).unbind(axis), weights)]), a)
    assert check(lambda t: t.transpose(*perm).unbind(axis)[-1] * 2.0, a)  # the other pieces get zero gradient
    # A piece used twice, and x used beside its pieces: their gradients add up.
    assert check(lambda t: t.unbind(axis)[0] * t.unbind(axis)[0] + t.sum(axis=axis) * t.unbind(axis)[1], a)


def test_a_tensor_is_not_iterable():
    """Unpacking says what it does (`a, b = t.unbind(0)`) instead of building a getitem per row unseen."""
    with pytest.raises(TypeError, match=r"\.unbind\(axis\)"):
        a, b = leaf(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="not iterable"):
        list(leaf(np.zeros(4)))


@given(arrays((3, 4)), arrays((3, 4)), st.sampled_from([0, (slice(None), 1), (np.array([0, 2, 0]),), np.s_[1:]]))
def test_gradients_of_indexing_are_added_without_touching_shared_arrays(a, d, index):
    """`+` hands one gradient array to both inputs, and indexing hands each of b and e a gradient that is zero
    outside the indexed part: the two meet in b and e, whose gradients must become sums of their own, leaving
    the shared array untouched. gradcheck sees any such mix-up as a wrong gradient."""
    def f(a, d):
        b, e = a * 2.0, d * 1.5
        c = b + e            # b and e receive the same gradient array
        return (c * c).sum() + (b[index] * 3.0 + e[index] ** 2).sum() + (b[index] * e[index]).sum()
    assert gradcheck(f, [leaf(a), leaf(d)])
