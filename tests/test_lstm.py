"""The LSTM: sigmoid, the fused recurrence (NumPy reference, numba kernel, float64 gradcheck), nn.LSTM against
torch.nn.LSTM, and AWD-LSTM's dropouts."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanograd
import nanograd.functional as F
from nanograd import Tensor, gradcheck, kernels, nn
from nanograd.recurrent import embedding_dropout, locked_dropout, lstm_backward, lstm_forward, lstm_recurrence
from kernel_inputs import assert_close, dtypes, layouts, make, seeds


def test_sigmoid_values_gradient_and_extremes():
    x = Tensor(np.linspace(-6, 6, 13), requires_grad=True)
    np.testing.assert_allclose(x.sigmoid().data, 1 / (1 + np.exp(-x.data)), rtol=1e-12)
    assert F.sigmoid(x).data.tolist() == x.sigmoid().data.tolist()
    gradcheck(lambda t: t.sigmoid(), [x])
    with np.errstate(over="raise"):  # no exp to overflow, even in float32 far out
        far = Tensor(np.array([-1e4, 1e4], np.float32)).sigmoid().data
    assert far.dtype == np.float32 and far.tolist() == [0.0, 1.0]


def test_each_lstm_reference_names_its_kernel():
    assert lstm_forward.kernel is kernels.lstm.lstm_forward
    assert lstm_backward.kernel is kernels.lstm.lstm_backward


@given(st.integers(1, 14), st.integers(1, 7), st.integers(1, 9), dtypes, layouts, seeds)  # 14: blocks of 6 rows
def test_kernel_equals_reference(batch, steps, hidden, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    xw = make(rng, (batch, steps, 4 * hidden), dtype, layout, scale=2.0)
    w_hh = make(rng, (4 * hidden, hidden), dtype, layout, scale=0.5)
    h0, c0 = make(rng, (batch, hidden), dtype, layout), make(rng, (batch, hidden), dtype, layout)
    states_k, gates_k = lstm_forward.kernel(xw, w_hh, h0, c0)
    states_r, gates_r = lstm_forward.reference(xw, w_hh, h0, c0)
    assert states_k.dtype == states_r.dtype == dtype
    assert_close(states_k, states_r, dtype)
    assert_close(gates_k, gates_r, dtype)
    dstates = make(rng, states_r.shape, dtype, layout)
    for got, want in zip(lstm_backward.kernel(dstates, w_hh, c0, states_r, gates_r),
                         lstm_backward.reference(dstates, w_hh, c0, states_r, gates_r)):
        assert got.dtype == dtype
        assert_close(got, want, dtype)


def _lstm_and_inputs(rng, num_layers=2, batch_first=True):
    lstm = nn.LSTM(3, 5, num_layers=num_layers, batch_first=batch_first, dtype=np.float64, rng=rng)
    x = Tensor(rng.standard_normal((2, 4, 3) if batch_first else (4, 2, 3)), requires_grad=True)
    h0 = Tensor(rng.standard_normal((num_layers, 2, 5)), requires_grad=True)
    c0 = Tensor(rng.standard_normal((num_layers, 2, 5)), requires_grad=True)
    return lstm, x, h0, c0


def _all_outputs(lstm):
    def run(x, h0, c0, *params):
        out, (h_n, c_n) = lstm(x, (h0, c0))
        return nanograd.cat([out.reshape(-1), h_n.reshape(-1), c_n.reshape(-1)])
    return run


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_lstm_gradcheck_float64(backend, monkeypatch):
    """Backpropagation through time, proven against finite differences through out, h_n and c_n at once, for
    the NumPy reference and (every size let through to it) the numba kernel."""
    monkeypatch.setattr(kernels, "MIN_KERNEL_SIZE", 0)
    rng = np.random.default_rng(0)
    lstm, x, h0, c0 = _lstm_and_inputs(rng)
    with kernels.use_backend(backend):
        gradcheck(_all_outputs(lstm), [x, h0, c0] + lstm.parameters())


def test_lstm_shapes_names_and_errors():
    lstm = nn.LSTM(3, 5, num_layers=2)
    assert list(lstm.state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert lstm.weight_ih_l0.shape == (20, 3) and lstm.weight_ih_l1.shape == (20, 5)
    assert all(np.abs(p.data).max() <= 1 / np.sqrt(5) for p in lstm.parameters())
    out, (h_n, c_n) = lstm(Tensor(np.zeros((2, 7, 3), np.float32)))
    assert out.shape == (2, 7, 5) and h_n.shape == c_n.shape == (2, 2, 5) and out.dtype == np.float32
    with pytest.raises(ValueError, match="input_size 3"):
        lstm(Tensor(np.zeros((2, 7, 4), np.float32)))
    with pytest.raises(ValueError, match="h_0"):
        lstm(Tensor(np.zeros((2, 7, 3), np.float32)), (Tensor(np.zeros((1, 2, 5))), Tensor(np.zeros((1, 2, 5)))))
    with pytest.raises(ValueError, match="weight_drop"):
        nn.LSTM(3, 5, weight_drop=1.0)
    with pytest.raises(ValueError, match="weight_hh"):
        lstm_recurrence(Tensor(np.zeros((1, 2, 8))), Tensor(np.zeros((8, 3))), Tensor(np.zeros((1, 2))),
                        Tensor(np.zeros((1, 2))))


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_matches_torch(batch_first):
    """Same weights (loaded by name) -> the same outputs, final states and gradients as torch.nn.LSTM."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ours, x, h0, c0 = _lstm_and_inputs(rng, batch_first=batch_first)
    theirs = torch.nn.LSTM(3, 5, num_layers=2, batch_first=batch_first).double()
    assert list(theirs.state_dict()) == list(ours.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    tx, th0, tc0 = (torch.tensor(t.data, requires_grad=True) for t in (x, h0, c0))
    t_out, (t_h, t_c) = theirs(tx, (th0, tc0))
    out, (h_n, c_n) = ours(x, (h0, c0))
    w = [rng.standard_normal(a.shape) for a in (out, h_n, c_n)]
    sum(((a * b).sum() for a, b in zip((out, h_n, c_n), w)), Tensor(np.zeros(()))).backward()
    sum((a * torch.from_numpy(b)).sum() for a, b in zip((t_out, t_h, t_c), w)).backward()
    for a, b in ((out, t_out), (h_n, t_h), (c_n, t_c), (x.grad, tx.grad), (h0.grad, th0.grad), (c0.grad, tc0.grad)):
        np.testing.assert_allclose(a.data if isinstance(a, Tensor) else a, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, dict(theirs.named_parameters())[name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_weight_drop_is_one_mask_for_every_step():
    """With weight_drop, the output equals running without it on W_hh times one fixed mask: the same dropped
    connections at every time step. Eval mode drops nothing."""
    rng = np.random.default_rng(2)
    lstm = nn.LSTM(3, 4, weight_drop=0.5, dtype=np.float64, rng=rng)
    x = Tensor(rng.standard_normal((2, 6, 3)))
    nanograd.manual_seed(7)
    out, _ = lstm(x)
    nanograd.manual_seed(7)
    mask = nanograd.random.generator().random(lstm.weight_hh_l0.shape) >= 0.5  # the draw F.dropout makes
    plain = nn.LSTM(3, 4, dtype=np.float64)
    plain.load_state_dict(lstm.state_dict())
    plain.weight_hh_l0.data[...] *= mask / 0.5
    np.testing.assert_allclose(out.data, plain(x)[0].data, rtol=1e-12)
    lstm.eval()
    plain.load_state_dict(lstm.state_dict())
    np.testing.assert_allclose(lstm(x)[0].data, plain(x)[0].data, rtol=1e-12)


def test_locked_dropout_masks_features_alike_at_every_step():
    x = Tensor(np.ones((3, 50, 40), np.float32), requires_grad=True)
    y = locked_dropout(x, 0.25, training=True)
    assert (y.data == y.data[:, :1]).all()  # every step has the same mask
    assert set(np.unique(y.data).tolist()) == {0.0, np.float32(1 / 0.75)}
    y.sum().backward()
    assert (x.grad == y.data).all()  # the gradient goes through the same mask
    assert locked_dropout(x, 0.25, training=False) is x
    with pytest.raises(ValueError, match="locked dropout"):
        locked_dropout(x, 1.0, True)


def test_embedding_dropout_drops_whole_tokens():
    weight = Tensor(np.ones((30, 8), np.float32), requires_grad=True)
    ids = np.arange(30).repeat(3).reshape(10, 9)
    emb = F.embedding(ids, embedding_dropout(weight, 0.5, training=True)).data  # (10, 9, 8)
    rows = emb.reshape(-1, 8)
    assert ((rows == 0).all(axis=1) | (rows == 2).all(axis=1)).all()  # a token is dropped in all its features
    per_token = (rows[:, 0] == 0).reshape(30, 3)
    assert (per_token == per_token[:, :1]).all()  # ... and wherever it occurs
    assert 0 < per_token[:, 0].sum() < 30
    assert embedding_dropout(weight, 0.5, training=False) is weight
