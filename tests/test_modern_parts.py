"""The modern recipe's ops and optimizer: rms_norm, rotary, relu_squared (nanograd/functional_modern.py) and
Muon (nanograd/optim.py): gradients against finite differences in float64, the properties that define them,
and PyTorch as an oracle where it is installed (skipped, visibly, without it)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nanograd.functional as F
from nanograd import Tensor, gradcheck, nn
from nanograd.optim import AdamW, Muon, newton_schulz

shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.sampled_from([2, 4, 8]))
seeds = st.integers(0, 2**32 - 1)


def _tensor(rng, shape, scale=1.0):
    return Tensor(rng.standard_normal(shape) * scale, requires_grad=True)


@given(shapes, seeds)
def test_gradients_match_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, w = _tensor(rng, shape), _tensor(rng, shape[-1:])
    positions = rng.integers(0, 1000, shape[-2])
    assert gradcheck(lambda x, w: F.rms_norm(x, w), (x, w))
    assert gradcheck(lambda x: F.rms_norm(x), (x,))
    assert gradcheck(lambda x: F.rotary(x, *F.rotary_angles(positions, shape[-1], np.float64)), (x,))
    # relu^2's slope is continuous at 0 but its curvature jumps, so a central difference across 0 is off by h/2:
    # keep inputs away from it.
    away = Tensor(np.sign(x.data) * (np.abs(x.data) + 0.1), requires_grad=True)
    assert gradcheck(F.relu_squared, (away,))


@given(shapes, seeds, st.floats(1e-3, 1e3))
def test_rms_norm_ignores_the_scale_of_its_input(shape, seed, scale):
    x = np.random.default_rng(seed).standard_normal(shape) + 0.5
    np.testing.assert_allclose(F.rms_norm(Tensor(scale * x), eps=0.0).data, F.rms_norm(Tensor(x), eps=0.0).data,
                               rtol=1e-12, atol=1e-12)
    y = F.rms_norm(Tensor(x), eps=0.0).data
    np.testing.assert_allclose((y * y).mean(axis=-1), 1.0, rtol=1e-12)  # every row of unit RMS


@given(st.integers(1, 6).map(lambda n: 2 * n), seeds, st.integers(0, 500), st.integers(0, 500),
       st.integers(-200, 200))
def test_rotary_is_a_rotation_that_sees_only_distances(hs, seed, m, n, shift):
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((1, hs)), rng.standard_normal((1, hs))

    def turned(v, p):
        return F.rotary(Tensor(v), *F.rotary_angles([p], hs, np.float64)).data[0]

    np.testing.assert_allclose(np.linalg.norm(turned(q, m)), np.linalg.norm(q), rtol=1e-12)  # lengths kept
    m2, n2 = m + shift + 200, n + shift + 200  # both moved by the same amount (kept >= 0)
    np.testing.assert_allclose(turned(q, m) @ turned(k, n), turned(q, m2) @ turned(k, n2), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(turned(q, 0), q[0])  # position 0 is not turned


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"rms_norm: weight of shape \(3,\) does not match input of shape \(2, 4\)"):
        F.rms_norm(Tensor(np.ones((2, 4))), Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="even last axis"):
        F.rotary(Tensor(np.ones((2, 5, 3))), *F.rotary_angles(np.arange(5), 2))
    with pytest.raises(ValueError, match=r"\(5, 2\), got \(4, 2\)"):
        F.rotary(Tensor(np.ones((2, 5, 4))), *F.rotary_angles(np.arange(4), 4))


@pytest.mark.parametrize("shape", [(64, 64), (128, 512), (512, 128), (96, 32)])
def test_newton_schulz_brings_singular_values_near_one_and_keeps_the_singular_vectors(shape):
    rng = np.random.default_rng(0)
    k = min(shape)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], k)))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], k)))
    s = 3.0 * np.logspace(0, -2, k)  # singular values spread over a factor of 100, as a gradient's can be
    x = newton_schulz(u @ np.diag(s) @ v.T)
    # Keller Jordan's coefficients leave the singular values in a band around 1 (about 0.7-1.2), not at 1:
    # that is the method's design (it trains as well and needs 5 steps), not a loose test. 5 steps lift a
    # singular value 100x below the largest (after dividing by the Frobenius norm, ~1000x below 1) into it.
    singular = np.linalg.svd(x, compute_uv=False)
    assert 0.65 < singular.min() and singular.max() < 1.25, (singular.min(), singular.max())
    # The same singular vectors: x = U diag(f(s)) V^T, so U^T x V is diagonal.
    inner = u.T @ x @ v
    off_diagonal = inner - np.diag(np.diag(inner))
    assert np.abs(off_diagonal).max() < 1e-8 and (np.diag(inner) > 0).all()


def test_muon_steps_hidden_matrices_orthogonally_and_the_rest_with_adamw():
    rng = np.random.default_rng(1)
    w, e, b = (nn.Parameter(rng.standard_normal(s)) for s in ((6, 4), (5, 4), (4,)))
    twin_e, twin_b = nn.Parameter(e.data.copy()), nn.Parameter(b.data.copy())
    muon = Muon([{"params": [w], "use_muon": True, "lr": 0.1}, {"params": [e, b], "use_muon": False}], lr=0.01,
                momentum=0.9)
    adamw = AdamW([twin_e, twin_b], lr=0.01, weight_decay=0.0)
    buf = np.zeros_like(w.data)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape) for p in (w, e, b)]
        for p, g in zip((w, e, b), grads):
            p.grad = g
        twin_e.grad, twin_b.grad = grads[1].copy(), grads[2].copy()
        before = w.data.copy()
        buf = 0.9 * buf + grads[0]
        muon.step()
        adamw.step()
        expected = before - 0.1 * np.sqrt(6 / 4) * newton_schulz(grads[0] + 0.9 * buf)
        np.testing.assert_allclose(w.data, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(e.data, twin_e.data)  # the AdamW groups: AdamW's step, bit for bit
    np.testing.assert_array_equal(b.data, twin_b.data)
    state = muon.state_dict()
    again = Muon([{"params": [w], "use_muon": True, "lr": 0.1}, {"params": [e, b], "use_muon": False}], lr=0.01)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.state[id(w)]["momentum_buffer"], buf)
    with pytest.raises(ValueError, match=r"2-D weights only; got shapes \[\(4,\)\]"):
        Muon([b])


# ---- PyTorch as the oracle ------------------------------------------------------------------------------

def _torch_rotary(torch, x, positions, base=10000.0):
    """RoPE as Llama's reference code computes it, in the half-split pairing (GPT-NeoX / Hugging Face)."""
    hs = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    angles = torch.outer(torch.as_tensor(positions, dtype=torch.float64), inv_freq)
    cos, sin = torch.cat([angles.cos(), angles.cos()], -1), torch.cat([angles.sin(), angles.sin()], -1)
    x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def test_ops_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w, dy = rng.standard_normal((2, 3, 5, 8)), rng.standard_normal(8), rng.standard_normal((2, 3, 5, 8))
    positions = np.arange(7, 12)
    cases = [
        (lambda t, w: F.rms_norm(t, w, 1e-6), lambda t, w: torch.nn.functional.rms_norm(t, (8,), w, 1e-6)),
        (lambda t, w: F.rms_norm(t, None, 1e-6) * w,
         lambda t, w: torch.nn.functional.rms_norm(t, (8,), None, 1e-6) * w),
        (lambda t, w: F.rotary(t, *F.rotary_angles(positions, 8, np.float64)) * w,
         lambda t, w: _torch_rotary(torch, t, positions) * w),
        (lambda t, w: F.relu_squared(t) * w, lambda t, w: torch.relu(t) ** 2 * w),
    ]
    # float64 on both sides: the only differences are summation order, ~1e-15 relative.
    for ours, theirs in cases:
        xt, wt = Tensor(x.copy(), requires_grad=True), Tensor(w.copy(), requires_grad=True)
        out = ours(xt, wt)
        (out * Tensor(dy)).sum().backward()
        xr, wr = (torch.tensor(a, requires_grad=True) for a in (x, w))
        ref = theirs(xr, wr)
        (ref * torch.tensor(dy)).sum().backward()
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(wt.grad, wr.grad.numpy(), rtol=1e-10, atol=1e-12)
