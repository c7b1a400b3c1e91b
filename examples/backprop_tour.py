"""A tour of backpropagation on a tiny expression.

    python examples/backprop_tour.py [--svg backprop_tour.svg]

We build  L = sum(tanh(x * w + b))  from three small tensors, let nanograd compute dL/dx, dL/dw
and dL/db by walking the graph backwards, print every node with its value and gradient, draw the
graph as an SVG picture (open it in a browser), and then check those gradients the slow, obvious
way: nudge each input number and watch L move.
"""
import argparse

import numpy as np

from nanograd import Tensor, gradcheck, trace


def walk(root: Tensor, depth: int = 0):
    """(depth, node) pairs from the output back to the leaves, each node's inputs indented below it."""
    yield depth, root
    for parent in root._parents:
        yield from walk(parent, depth + 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--svg", default="backprop_tour.svg", help="where to write the picture of the graph")
    args = parser.parse_args()

    # float64, so the finite-difference check at the end is precise.
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    w = Tensor(np.array([0.5, 0.25]), requires_grad=True)
    b = Tensor(np.array(0.1), requires_grad=True)

    # Forward pass: each op records its inputs and how to send a gradient back to them.
    xw = x * w            # d(xw)/dx = w,  d(xw)/dw = x
    z = xw + b            # b is broadcast over both elements, so its gradient is summed back
    h = z.tanh()          # d tanh(z)/dz = 1 - tanh(z)^2
    loss = h.sum()        # dL/dh = 1 for every element
    names = {x: "x", w: "w", b: "b", loss: "L"}  # the other nodes are labelled by their op (node.op)

    # Backward frees the graph's links as it goes (as PyTorch does), so walk it first, and ask the
    # intermediate nodes to keep their gradients, which are normally released to save memory:
    # trace() does both, and remembers the graph for drawing it afterwards.
    tree = list(walk(loss))
    graph = trace(loss)
    loss.backward()  # one call: reverse topological order, chain rule at every node

    print("The graph, from the loss back to the inputs (value and gradient of each node):\n")
    for depth, node in tree:
        print(f"{'    ' * depth}{names.get(node, node.op):<6} value={np.array2string(node.data, precision=3):<16}"
              f" grad={np.array2string(node.grad, precision=3)}")

    print(f"\nThe same graph, drawn: {graph.draw(args.svg, names)}")
    print("\nBy hand: dL/dz = 1 - tanh(z)^2 =", np.round(1 - np.tanh(z.data) ** 2, 4))
    print("         dL/dx = dL/dz * w      =", np.round((1 - np.tanh(z.data) ** 2) * w.data, 4))
    print("         dL/db = sum(dL/dz)     =", np.round((1 - np.tanh(z.data) ** 2).sum(), 4))

    # gradcheck recomputes every gradient element as (L(v + eps) - L(v - eps)) / (2 eps).
    ok = gradcheck(lambda x, w, b: (x * w + b).tanh().sum(), [x, w, b])
    print("\ngradcheck against finite differences:", "passed" if ok else "failed")


if __name__ == "__main__":
    main()
