"""nanograd.nn modules and nanograd.optim, against hand-computed updates and definitions."""
import math

import numpy as np
import pytest

import nanograd.functional as F
from nanograd import Tensor, is_grad_enabled, nn, optim
from nanograd.flat_adamw import FlatAdamW


class TwoLayer(nn.Module):
    def __init__(self, rng):
        self.fc = nn.Linear(2, 16, rng=rng)
        self.blocks = nn.ModuleList([nn.LayerNorm(16), nn.Dropout(0.0)])
        self.head = nn.Linear(16, 2, rng=rng)

    def forward(self, x):
        h = self.fc(x).tanh()
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def test_named_parameters_follow_attribute_order():
    model = TwoLayer(np.random.default_rng(0))
    assert [name for name, _ in model.named_parameters()] == [
        "fc.weight", "fc.bias", "blocks.0.weight", "blocks.0.bias", "head.weight", "head.bias"]
    assert model.fc.weight.shape == (16, 2)  # (out, in) as in PyTorch


def test_tied_parameter_counted_once_but_saved_under_both_names():
    model = TwoLayer(np.random.default_rng(0))
    model.head.weight = model.fc.weight  # a tie (shapes differ in meaning, not in autograd)
    assert sum(p is model.fc.weight for p in model.parameters()) == 1
    state = model.state_dict()
    assert state["head.weight"] is state["fc.weight"]
    model.load_state_dict({k: v + 1.0 for k, v in state.items()})
    assert model.head.weight is model.fc.weight


def test_load_state_dict_errors_name_the_keys_and_shapes():
    model = TwoLayer(np.random.default_rng(0))
    state = {k: v.copy() for k, v in model.state_dict().items()}
    del state["head.bias"]
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['head.bias'\], unexpected keys \['extra'\]"):
        model.load_state_dict(state)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    state["fc.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"fc.bias has shape \(3,\) .* \(16,\)"):
        model.load_state_dict(state)


def test_train_eval_and_to_dtype():
    model = TwoLayer(np.random.default_rng(0)).eval()
    assert not model.blocks[1].training
    model.train()
    assert model.blocks[1].training
    model.to(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())


def test_evaluating_is_eval_and_no_grad_then_restores_the_modes():
    model = TwoLayer(np.random.default_rng(0))
    x = Tensor(np.ones((3, 2), np.float32))
    with model.evaluating() as inside:
        assert inside is model and not any(m.training for _, m in model.named_modules())
        out = model(x)
        assert not out.requires_grad and out._parents == ()  # no graph was recorded
    assert all(m.training for _, m in model.named_modules()) and is_grad_enabled()
    assert model(x).requires_grad
    model.eval()
    with model.evaluating():
        pass
    assert not any(m.training for _, m in model.named_modules())  # eval before, eval after


def test_evaluating_restores_the_modes_after_an_exception_and_when_nested():
    model = TwoLayer(np.random.default_rng(0))
    model.blocks.eval()  # a mix: each module gets its own flag back, not the top module's
    with pytest.raises(RuntimeError, match="inside"):
        with model.evaluating():
            raise RuntimeError("inside")
    assert model.training and model.fc.training and not model.blocks.training and not model.blocks[1].training
    assert is_grad_enabled()
    with model.evaluating():
        with model.blocks.evaluating():
            assert not is_grad_enabled()
        assert not model.training and not model.blocks[1].training and not is_grad_enabled()  # still the outer's
    assert model.training and not model.blocks[1].training and is_grad_enabled()


def adamw_reference(p, grads, lr, betas, eps, wd):
    """torch.optim.AdamW's update, written out step by step."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p * (1 - lr * wd)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def test_adamw_matches_hand_computed_update_per_group():
    rng = np.random.default_rng(0)
    w0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    grads_w = [rng.standard_normal((3, 4)) for _ in range(3)]
    grads_b = [rng.standard_normal(4) for _ in range(3)]
    w, b = Tensor(w0.copy(), requires_grad=True), Tensor(b0.copy(), requires_grad=True)
    opt = optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0, "lr": 0.05}],
                      lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for gw, gb in zip(grads_w, grads_b):
        w.grad, b.grad = gw.copy(), gb.copy()
        opt.step()
    assert np.allclose(w.data, adamw_reference(w0, grads_w, 0.01, (0.9, 0.99), 1e-8, 0.1), rtol=1e-12, atol=1e-14)
    assert np.allclose(b.data, adamw_reference(b0, grads_b, 0.05, (0.9, 0.99), 1e-8, 0.0), rtol=1e-12, atol=1e-14)


def test_optimizer_state_dict_resumes_exactly():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(4)]

    def run(split):
        p = Tensor(np.ones(5, np.float32), requires_grad=True)
        opt = optim.AdamW([p], lr=0.1)
        for i, g in enumerate(grads):
            if i == split:
                state = opt.state_dict()
                opt = optim.AdamW([p], lr=0.1)
                opt.load_state_dict(state)
            p.grad = g.copy()
            opt.step()
        return p.data

    assert np.array_equal(run(split=2), run(split=None))


def two_layer_gradients(model, x, step):
    """Fresh gradients for model's parameters on x; at step 2 the first parameter gets none."""
    model.zero_grad()
    (model(Tensor(x)) ** 2).mean().backward()
    if step == 2:
        model.parameters()[0].grad = None


def test_adamw_never_rebinds_parameters():
    """Plain AdamW updates each parameter's own array in place: .data stays the array the model made."""
    model = TwoLayer(np.random.default_rng(3))
    arrays = [p.data for p in model.parameters()]
    opt = optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    x = np.random.default_rng(4).standard_normal((8, 2)).astype(np.float32)
    for step in range(4):
        two_layer_gradients(model, x, step)
        opt.step()
        if step == 1:
            opt.load_state_dict(opt.state_dict())
    assert all(p.data is a and a.base is None for p, a in zip(model.parameters(), arrays))


def test_flat_adamw_equals_adamw():
    """FlatAdamW keeps each group's parameters as views into one flat array, gathers their gradients into one and
    updates the group with a single adamw_step. It must stay bit-identical to AdamW, also across a step where one
    parameter gets no gradient (the per-parameter path), a state_dict round trip, and a parameter whose .data is
    rebound after the optimizer took it (as model.to(dtype) does): that array is the one updated from then on."""
    def make(kind):
        model = TwoLayer(np.random.default_rng(3))
        return model, kind(model.parameters(), lr=0.01, weight_decay=0.1)

    (flat_model, flat_opt), (plain_model, plain_opt) = make(FlatAdamW), make(optim.AdamW)
    rebound_model, rebound_opt = make(FlatAdamW)
    flat_params, rebound = flat_model.parameters(), rebound_model.parameters()[1]
    flat_storage = flat_params[0].data.base
    assert flat_storage is not None and all(p.data.base is flat_storage for p in flat_params)
    rebound.data = rebound.data.copy()  # its group leaves the flat path: the new array must be the one updated
    x = np.random.default_rng(4).standard_normal((8, 2)).astype(np.float32)
    for step in range(5):
        for model in (flat_model, plain_model, rebound_model):
            two_layer_gradients(model, x, step)
        if step == 3:
            state = flat_opt.state_dict()
            flat_opt = FlatAdamW(flat_params, lr=0.01, weight_decay=0.1)
            flat_opt.load_state_dict(state)
        for opt in (flat_opt, plain_opt, rebound_opt):
            opt.step()
        if step < 2:  # the flat path ran (after step 2 the step counts differ): the moments are views into one array
            moments = {id(flat_opt.state[id(p)]["exp_avg"].base) for p in flat_params}
            assert len(moments) == 1 and flat_opt.state[id(flat_params[0])]["exp_avg"].base is not None
        for model in (flat_model, rebound_model):
            for p, want in zip(model.parameters(), plain_model.parameters()):
                assert np.array_equal(p.data, want.data)


@pytest.mark.parametrize("writer, reader", [(optim.AdamW, FlatAdamW), (FlatAdamW, optim.AdamW)])
def test_adamw_checkpoints_load_into_flat_adamw_and_back(writer, reader):
    """One state_dict format: a run resumed with the other optimizer continues bit-identically."""
    x = np.random.default_rng(4).standard_normal((8, 2)).astype(np.float32)

    def run(resume_with):
        model = TwoLayer(np.random.default_rng(3))
        opt = writer(model.parameters(), lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)
        for step in range(6):
            if step == 3 and resume_with is not None:
                state = opt.state_dict()
                opt = resume_with(model.parameters(), lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)
                opt.load_state_dict(state)
            two_layer_gradients(model, x, step)
            opt.step()
        return [p.data.copy() for p in model.parameters()]

    for resumed, straight in zip(run(reader), run(None)):
        assert np.array_equal(resumed, straight)


def test_sgd_momentum_matches_hand_computed_update():
    p = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    expected, buffer = p.data.copy(), np.zeros(2)
    for g in ([0.5, 1.0], [-1.0, 0.25]):
        p.grad = np.array(g)
        opt.step()
        buffer = 0.9 * buffer + (np.array(g) + 0.01 * expected)
        expected = expected - 0.1 * buffer
    assert np.allclose(p.data, expected, rtol=1e-14)


def test_clip_grad_norm_matches_definition():
    a = Tensor(np.zeros(3), requires_grad=True)
    b = Tensor(np.zeros((2, 2)), requires_grad=True)
    a.grad, b.grad = np.array([3.0, 0.0, 0.0]), np.array([[0.0, 4.0], [0.0, 0.0]])
    total = optim.clip_grad_norm_([a, b], max_norm=1.0)
    assert math.isclose(total, 5.0)
    clipped = math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum())
    assert math.isclose(clipped, 5.0 / (5.0 + 1e-6))
    assert optim.clip_grad_norm_([a, b], max_norm=10.0) == pytest.approx(clipped)
    assert math.isclose(math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()), clipped)  # unchanged under the max


def test_cosine_lr_schedule():
    kwargs = dict(max_lr=1e-3, min_lr=1e-4, warmup_steps=100, decay_steps=2000)
    assert optim.cosine_lr(0, **kwargs) == pytest.approx(1e-3 / 101)
    assert optim.cosine_lr(99, **kwargs) == pytest.approx(1e-3 * 100 / 101)
    assert optim.cosine_lr(100, **kwargs) == pytest.approx(1e-3)
    assert optim.cosine_lr(1050, **kwargs) == pytest.approx(0.55e-3)
    assert optim.cosine_lr(5000, **kwargs) == 1e-4
    lrs = [optim.cosine_lr(s, **kwargs) for s in range(100, 2000)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))


def test_mlp_learns_two_moons():
    rng = np.random.default_rng(0)
    n = 200
    angle = rng.uniform(0, math.pi, n)
    upper = rng.random(n) < 0.5
    points = np.where(upper[:, None], np.c_[np.cos(angle), np.sin(angle)],
                      np.c_[1 - np.cos(angle), 0.5 - np.sin(angle)]).astype(np.float32)
    labels = upper.astype(np.int64)
    model = TwoLayer(rng)
    opt = optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.0)
    for _ in range(300):
        loss = F.cross_entropy(model(Tensor(points)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    accuracy = (model(Tensor(points)).data.argmax(-1) == labels).mean()
    assert loss.item() < 0.05 and accuracy == 1.0


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.AdamW(p, lr=-1e-3), "AdamW: lr must be >= 0, got -0.001"),
    (lambda p: optim.AdamW(p, lr=float("nan")), "AdamW: lr must be >= 0, got nan"),
    (lambda p: optim.AdamW(p, betas=(1.0, 0.999)), r"AdamW: betas\[0\] must be in \[0, 1\), got 1.0"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), r"AdamW: betas\[1\] must be in \[0, 1\), got -0.1"),
    (lambda p: optim.AdamW(p, betas=(0.9,)), r"AdamW: betas must be a pair"),
    (lambda p: optim.AdamW(p, eps=-1e-8), "AdamW: eps must be >= 0"),
    (lambda p: optim.AdamW(p, weight_decay=-0.1), "AdamW: weight_decay must be >= 0"),
    (lambda p: optim.AdamW([{"params": p, "lr": -1.0}]), "AdamW: lr must be >= 0, got -1.0"),  # per group
    (lambda p: optim.SGD(p, lr=-0.1), "SGD: lr must be >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.9), "SGD: momentum must be >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "SGD: weight_decay must be >= 0"),
])
def test_impossible_hyperparameters_are_refused_naming_the_setting(make, message):
    """torch.optim refuses these too (ValueError 'Invalid learning rate' etc.)."""
    with pytest.raises(ValueError, match=message):
        make([Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)])


def test_edge_hyperparameters_are_accepted():
    p = [Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)]
    optim.AdamW(p, lr=0.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0)
    optim.SGD(p, lr=0.0)
