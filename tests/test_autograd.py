"""The autograd machinery: graph walking, accumulation, dtypes, no_grad, and its error messages."""
import numpy as np
import pytest

import nanograd
import nanograd.functional as F
from nanograd import Tensor, gradcheck, no_grad


def test_node_used_twice_accumulates():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x * x + x  # x reaches y along three paths
    y.sum().backward()
    assert np.array_equal(x.grad, 2 * x.data + 1)


def test_backward_accumulates_across_calls_until_zeroed():
    x = Tensor(np.array([2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    assert np.array_equal(x.grad, [6.0])


def test_ten_thousand_op_chain_needs_no_recursion():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert np.isclose(x.grad, 1.0001 ** 10_000)


def test_float32_stays_float32():
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    w = Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    out = ((x @ w) * 2.0 + 1).tanh().exp().mean()
    out.backward()
    assert out.dtype == x.grad.dtype == w.grad.dtype == np.float32


def test_python_numbers_and_lists_become_float32():
    assert Tensor(3).dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.zeros(2, np.float64)).dtype == np.float64


def test_leaf_gradients_are_not_aliased():
    # Both operands of + receive the same upstream array; scaling one grad in place must not touch the other.
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    a.grad *= 10
    assert np.array_equal(b.grad, np.ones(3))


def test_intermediate_grads_released_unless_retained():
    x = Tensor(np.ones(3), requires_grad=True)
    hidden = x * 2.0
    kept = (x * 3.0).retain_grad()
    (hidden + kept).sum().backward()
    assert hidden.grad is None
    assert np.array_equal(kept.grad, np.ones(3))


def test_no_grad_builds_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert nanograd.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x.detach() * x).sum()
    y.backward()
    assert np.array_equal(x.grad, np.ones(3))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_mismatched_shapes_name_both():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4,)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a @ b


def test_bad_axis_names_axis_and_shape():
    with pytest.raises(ValueError, match=r"axis 3 .*\(2, 3\)"):
        Tensor(np.ones((2, 3))).sum(axis=3)


def test_bad_reshape_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        Tensor(np.ones((2, 3))).reshape(4)


def test_non_scalar_backward_says_what_to_do():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="non-scalar.*grad="):
        (x * 2.0).backward()
    (x * 2.0).backward(np.ones(3))
    assert np.array_equal(x.grad, [2.0, 2.0, 2.0])


def test_second_backward_through_freed_graph_is_an_error():
    x = Tensor(np.ones(3), requires_grad=True)
    hidden = x * 2.0
    loss = hidden.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        loss.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        (hidden * 1.0).sum().backward()


def test_backward_without_grad_required():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(1)).backward()


def test_gradcheck_catches_a_wrong_backward():
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)

    def wrong_square(t):
        return Tensor.from_op(t.data ** 2, (t,), lambda g: (g * t.data,), "wrong_square")  # should be 2 * t

    with pytest.raises(nanograd.GradcheckError, match=r"3 of 3 .*worst is input 0"):
        gradcheck(wrong_square, [x])
    with pytest.raises(nanograd.GradcheckError, match="random direction"):
        gradcheck(wrong_square, [x], projections=2)
    assert gradcheck(lambda t: t ** 2, [x], projections=2)


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2.0, [Tensor(np.ones(2, np.float32), requires_grad=True)])


def test_each_node_is_labelled_with_its_op():
    a, b = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.ones((2, 3)))
    assert a.op == "" and b.op == ""  # leaves
    assert (a * b).op == "*" and (a + b).op == "+" and (a - b).op == "-" and (a / b).op == "/"
    assert (-a).op == "neg" and (a ** 2).op == "**2" and (a @ b.T).op == "@"
    assert a.sum().op == "sum" and a.tanh().op == "tanh" and a.reshape(6).op == "reshape"
    assert a.transpose(1, 0).op == "transpose" and a[0].op == "getitem"
    assert F.softmax(a).op == "softmax" and F.log_softmax(a).op == "log_softmax" and F.gelu(a).op == "gelu"
    assert F.layer_norm(a, None, None).op == "layer_norm"
    assert F.linear(a, Tensor(np.ones((4, 3)))).op == "linear"
    assert F.cross_entropy(a, np.array([0, 2])).op == "cross_entropy"
    assert F.embedding(np.array([1]), a).op == "embedding"
    heads = a.reshape(1, 1, 2, 3)
    assert F.scaled_dot_product_attention(heads, heads, heads).op == "attention"
    assert nanograd.cat([a, b]).op == "cat" and nanograd.stack([a, b]).op == "stack"
    with no_grad():  # the label is there without a graph too
        assert (a * b).op == "*"
