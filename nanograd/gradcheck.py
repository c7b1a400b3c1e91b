"""Check analytic gradients against central finite differences.

For a function f and a small step eps, (f(x + eps u) - f(x - eps u)) / (2 eps) approximates the
directional derivative <grad f(x), u> with an error of order eps^2. In float64 with eps = 1e-6 that
truncation error (~1e-12 times the third derivative) and the rounding error (~1e-16 / 1e-6 = 1e-10
relative to f) both sit far below the default tolerances, so a real bug in a backward pass stands
out clearly, while float32 would drown it in noise: hence float64 only.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4,
              projections: int | None = None, seed: int = 0) -> bool:
    """Compare the gradients backward() computes for fn(*inputs) with finite differences.

    fn: takes the input Tensors and returns a Tensor of any shape. Its output is reduced to the
        scalar sum(out * w) with fixed random weights w, so every output element takes part.
    inputs: float64 Tensors; those with requires_grad=True are checked.
    projections: None checks every element of every input (two evaluations of fn per element);
        an integer k instead checks k random directions u, <grad, u> against the finite difference
        along u, covering all elements at once (for large inputs such as a whole model's parameters).
    Returns True, or raises GradcheckError describing the worst mismatch.
    """
    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for x in checked:
        if x.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs (finite differences in {x.dtype} are mostly rounding "
                            "noise); build the inputs as float64 or call model.to(np.float64)")
    rng = np.random.default_rng(seed)

    for x in checked:
        x.grad = None
    out = fn(*inputs)
    weights = rng.standard_normal(out.shape)
    (out * Tensor(weights)).sum().backward()
    analytic = [x.grad if x.grad is not None else np.zeros_like(x.data) for x in checked]

    def objective() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * weights))

    def difference(nudge) -> float:
        """Central difference of the objective; nudge(h) moves the inputs by h along the direction."""
        nudge(eps)
        plus = objective()
        nudge(-2 * eps)
        minus = objective()
        nudge(eps)
        return (plus - minus) / (2 * eps)

    if projections is not None:
        for k in range(projections):
            directions = [rng.standard_normal(x.shape) for x in checked]
            expected = sum(float(np.sum(g * u)) for g, u in zip(analytic, directions))

            def nudge(h, directions=directions):
                for x, u in zip(checked, directions):
                    x.data += h * u

            numeric = difference(nudge)
            if abs(expected - numeric) > atol + rtol * abs(numeric):
                raise GradcheckError(f"gradcheck: along random direction {k}, analytic {expected:.10g} vs numeric "
                                     f"{numeric:.10g} (|diff| {abs(expected - numeric):.3g} > atol {atol} + "
                                     f"rtol {rtol} * |numeric|)")
        return True

    worst = None
    mismatches = total = 0
    for i, (x, grad) in enumerate(zip(checked, analytic)):
        for index in np.ndindex(x.shape):

            def nudge(h, x=x, index=index):
                x.data[index] += h

            numeric = difference(nudge)
            diff = abs(grad[index] - numeric)
            excess = diff - (atol + rtol * abs(numeric))
            total += 1
            if excess > 0:
                mismatches += 1
                if worst is None or excess > worst[0]:
                    worst = (excess, i, x.shape, index, grad[index], numeric, diff)
    if worst is not None:
        _, i, shape, index, value, numeric, diff = worst
        raise GradcheckError(f"gradcheck: {mismatches} of {total} gradient elements mismatch; worst is input {i} "
                             f"(shape {shape}) at {index}: analytic {value:.10g} vs numeric {numeric:.10g} "
                             f"(|diff| {diff:.3g}, atol {atol}, rtol {rtol})")
    return True
