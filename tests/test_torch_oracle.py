"""nanograd against PyTorch as an oracle (optional: skipped, visibly, when torch is not installed).

A transformer-block-shaped graph and three AdamW steps, in float64, must give PyTorch's loss,
gradients and updated weights. float64 makes differences in summation order negligible (~1e-15
relative), so the tolerances below (1e-10) only absorb rounding, never a wrong formula.
"""
import numpy as np
import pytest

import nanograd.functional as F
from nanograd import Tensor, optim

torch = pytest.importorskip("torch")
torch_F = torch.nn.functional


def test_block_forward_backward_and_adamw_match_pytorch():
    rng = np.random.default_rng(0)
    B, T, C, n_head, vocab = 2, 5, 8, 2, 11
    arrays = {
        "x": rng.standard_normal((B, T, C)), "ln_w": 1 + 0.1 * rng.standard_normal(C), "ln_b": rng.standard_normal(C),
        "attn_w": 0.3 * rng.standard_normal((3 * C, C)), "attn_b": rng.standard_normal(3 * C),
        "fc_w": 0.3 * rng.standard_normal((4 * C, C)), "head_w": 0.3 * rng.standard_normal((vocab, 4 * C)),
    }
    targets = rng.integers(0, vocab, (B, T))
    targets[0, 1] = -1  # an ignored position

    def forward(t, ops):
        """One function, two libraries: `ops` supplies the library-specific calls."""
        h = ops["layer_norm"](t["x"], t["ln_w"], t["ln_b"])
        q, k, v = ops["split"](ops["linear"](h, t["attn_w"], t["attn_b"]))
        heads = [ops["heads"](a) for a in (q, k, v)]
        y = ops["merge"](ops["attention"](*heads)) + t["x"]
        logits = ops["linear"](ops["gelu"](ops["linear"](y, t["fc_w"], None)), t["head_w"], None)
        return ops["cross_entropy"](logits, targets)

    ours = {name: Tensor(a.copy(), requires_grad=True) for name, a in arrays.items()}
    our_ops = {
        "layer_norm": F.layer_norm, "linear": F.linear, "gelu": F.gelu,
        "split": lambda a: (a[..., :C], a[..., C:2 * C], a[..., 2 * C:]),
        "heads": lambda a: a.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3),
        "merge": lambda a: a.transpose(0, 2, 1, 3).reshape(B, T, C),
        "attention": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True),
        "cross_entropy": lambda logits, y: F.cross_entropy(logits, y, ignore_index=-1),
    }
    theirs = {name: torch.tensor(a, requires_grad=True) for name, a in arrays.items()}
    their_ops = {
        "layer_norm": lambda a, w, b: torch_F.layer_norm(a, (C,), w, b, 1e-5),
        "linear": torch_F.linear, "gelu": lambda a: torch_F.gelu(a, approximate="tanh"),
        "split": lambda a: a.split(C, dim=-1),
        "heads": lambda a: a.view(B, T, n_head, C // n_head).transpose(1, 2),
        "merge": lambda a: a.transpose(1, 2).reshape(B, T, C),
        "attention": lambda q, k, v: torch_F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "cross_entropy": lambda logits, y: torch_F.cross_entropy(logits.reshape(-1, vocab),
                                                                 torch.tensor(y).reshape(-1), ignore_index=-1),
    }

    our_opt = optim.AdamW(list(ours.values()), lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    their_opt = torch.optim.AdamW(list(theirs.values()), lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    for _ in range(3):
        our_loss, their_loss = forward(ours, our_ops), forward(theirs, their_ops)
        assert our_loss.item() == pytest.approx(their_loss.item(), rel=1e-10)
        our_opt.zero_grad()
        their_opt.zero_grad()
        our_loss.backward()
        their_loss.backward()
        for name in arrays:
            np.testing.assert_allclose(ours[name].grad, theirs[name].grad.numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"gradient of {name}")
        assert optim.clip_grad_norm_(list(ours.values()), 1.0) == pytest.approx(
            float(torch.nn.utils.clip_grad_norm_(list(theirs.values()), 1.0)), rel=1e-10)
        our_opt.step()
        their_opt.step()
    # atol 1e-9 on weights: the key biases' true gradient is exactly zero (softmax ignores a shift common
    # to a row), so both libraries feed Adam pure rounding noise (~1e-16), which Adam scales by lr/eps = 1e6
    # for three steps: differences up to ~3e-10 between two correct implementations.
    for name in arrays:
        np.testing.assert_allclose(ours[name].data, theirs[name].detach().numpy(), rtol=1e-10, atol=1e-9,
                                   err_msg=f"weights {name} after three AdamW steps")
