"""Modules: parameters bundled with the function that uses them.

A Module finds its parameters and submodules by looking at its own attributes, in the order they
were set, so `named_parameters()` yields names like "transformer.h.0.attn.c_attn.weight" that
match GPT-2 and nanoGPT checkpoints.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import functional as F
from .movement import stack
from .recurrent import lstm_recurrence
from .tensor import Tensor, no_grad


class Parameter(Tensor):
    """A Tensor that a Module trains: it always requires grad."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def _children(self):
        """(name, Parameter | Module) pairs, in attribute order."""
        for name, value in vars(self).items():
            if isinstance(value, (Parameter, Module)):
                yield name, value

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._children():
            if isinstance(child, Module):
                yield from child.named_modules(f"{prefix}{name}.")

    def _named_parameters_with_ties(self):
        """Every (name, parameter) pair, a shared parameter once per name it has."""
        for prefix, module in self.named_modules():
            for name, child in module._children():
                if isinstance(child, Parameter):
                    yield prefix + name, child

    def named_parameters(self):
        """(name, parameter) pairs; a parameter shared by several modules appears once, first name wins."""
        seen = set()
        for name, param in self._named_parameters_with_ties():
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def parameters(self) -> list:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> dict:
        """{name: ndarray} for every parameter name (a tied weight under each of its names).

        The arrays are the parameters' own data, not copies: copy them to keep a snapshot.
        """
        return {name: param.data for name, param in self._named_parameters_with_ties()}

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters in place (so tied weights stay tied)."""
        own = dict(self._named_parameters_with_ties())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, param in own.items():
            if name not in state_dict:
                continue
            value = np.asarray(state_dict[name])
            if value.shape != param.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape} in the state dict "
                                 f"but {param.shape} in the model")
            param.data[...] = value

    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    @contextlib.contextmanager
    def evaluating(self):
        """`with model.evaluating():` evaluation mode (no dropout) and no graph (no_grad) inside the block. On
        leaving it, by an exception too, each submodule gets its own training flag back (a mix of modes survives,
        which train(was_training) would flatten: it sets them all) and gradients are recorded again if they
        were. no_grad is global: a generator that yields inside the block leaves it on while its caller runs."""
        modes = [(module, module.training) for _, module in self.named_modules()]
        self.eval()
        try:
            with no_grad():
                yield self
        finally:
            for module, training in modes:
                module.training = training

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def to(self, dtype) -> "Module":
        """Convert every parameter to `dtype` in place (tied parameters stay one object)."""
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            param.grad = None
        return self


class ModuleList(Module):
    """A list of modules, named "0", "1", ... in parameter names."""

    def __init__(self, modules=()):
        self._modules = list(modules)

    def _children(self):
        for i, module in enumerate(self._modules):
            yield str(i), module

    def __getitem__(self, i):
        return self._modules[i]

    def __iter__(self):
        return iter(self._modules)

    def __len__(self):
        return len(self._modules)

    def append(self, module: Module) -> None:
        self._modules.append(module)


class Sequential(ModuleList):
    """Modules applied one after another."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for module in self._modules:
            x = module(x)
        return x


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


# Initial values are drawn in float32 (or float64 when asked) straight into the parameter's array: a
# float64 draw cast afterwards would hold a temporary twice the parameter's size, which for GPT-2's
# 50257 x 768 embedding was most of the peak memory of building the model.
def _float_dtype(dtype):
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _uniform(rng, bound, shape, dtype):
    """U(-bound, bound) of `shape`, as dtype."""
    values = rng.random(shape, dtype=_float_dtype(dtype))
    values *= 2 * bound
    values -= bound
    return values.astype(dtype, copy=False)


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features), initialised as PyTorch does."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, rng=None):
        rng = _rng(rng)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features), dtype))
        self.bias = Parameter(_uniform(rng, bound, out_features, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    """A table of num_embeddings vectors of size embedding_dim, looked up by integer id."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32, rng=None):
        shape = (num_embeddings, embedding_dim)
        self.weight = Parameter(_rng(rng).standard_normal(shape, dtype=_float_dtype(dtype)).astype(dtype, copy=False))

    def forward(self, ids) -> Tensor:
        return F.embedding(ids, self.weight)


class LayerNorm(Module):
    def __init__(self, n_features: int, eps: float = 1e-5, bias: bool = True, dtype=np.float32):
        self.eps = eps
        self.weight = Parameter(np.ones(n_features, dtype))
        self.bias = Parameter(np.zeros(n_features, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class RMSNorm(Module):
    """x / rms(x) * weight along the last axis (Llama's norm: no centring, no bias)."""

    def __init__(self, n_features: int, eps: float = 1e-6, dtype=np.float32):
        self.eps = eps
        self.weight = Parameter(np.ones(n_features, dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight, self.eps)


class Dropout(Module):
    def __init__(self, p: float = 0.5):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)


class LSTM(Module):
    """A stack of LSTM layers, shaped as torch.nn.LSTM: the same arguments, parameter names and shapes
    (weight_ih_l{k} (4H, in), weight_hh_l{k} (4H, H), bias_ih_l{k}, bias_hh_l{k} (4H,); gates in the order
    i, f, g, o) and initialisation (every parameter uniform in +-1/sqrt(H)), so state_dict() keys are torch's.

        out, (h_n, c_n) = lstm(x)  or  lstm(x, (h_0, c_0))
    x (B, T, input_size) (batch_first=True, the default here; (T, B, input_size) with False), out
    (B, T, hidden_size), h_n, c_n (num_layers, B, hidden_size). `dropout` between layers as in torch;
    `weight_drop` (not in torch) is AWD-LSTM's DropConnect: in training, one dropout mask on each
    weight_hh for the whole batch, so every time step of the batch sees the same dropped connections.
    The recurrence itself is nanograd/recurrent.py."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, weight_drop: float = 0.0, dtype=np.float32,
                 rng=None):
        for name, p in (("dropout", dropout), ("weight_drop", weight_drop)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"LSTM {name} must be in [0, 1), got {p}")
        rng = _rng(rng)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.weight_drop = bias, batch_first, dropout, weight_drop
        bound, H = 1.0 / np.sqrt(hidden_size), hidden_size
        for k in range(num_layers):
            n_in = input_size if k == 0 else H
            setattr(self, f"weight_ih_l{k}", Parameter(_uniform(rng, bound, (4 * H, n_in), dtype)))
            setattr(self, f"weight_hh_l{k}", Parameter(_uniform(rng, bound, (4 * H, H), dtype)))
            if bias:
                setattr(self, f"bias_ih_l{k}", Parameter(_uniform(rng, bound, 4 * H, dtype)))
                setattr(self, f"bias_hh_l{k}", Parameter(_uniform(rng, bound, 4 * H, dtype)))

    def forward(self, x: Tensor, state=None):
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"LSTM: input of shape {x.shape} does not match input_size {self.input_size} "
                             f"(expected a 3-D {'(B, T, C)' if self.batch_first else '(T, B, C)'} tensor)")
        if not self.batch_first:
            x = x.transpose(1, 0, 2)  # (B, T, C)
        L, B, H = self.num_layers, x.shape[0], self.hidden_size
        if state is None:
            h0 = c0 = Tensor(np.zeros((L, B, H), x.dtype))
        else:
            h0, c0 = state
            if h0.shape != (L, B, H) or c0.shape != (L, B, H):
                raise ValueError(f"LSTM: h_0 {h0.shape} and c_0 {c0.shape} must both be (num_layers, B, "
                                 f"hidden_size) = {(L, B, H)}")
        h_n, c_n = [], []
        for k in range(L):
            w_hh = getattr(self, f"weight_hh_l{k}")
            w_hh = F.dropout(w_hh, self.weight_drop, self.training)  # DropConnect: one mask for all steps
            b = getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}") if self.bias else None
            xw = F.linear(x, getattr(self, f"weight_ih_l{k}"), b)  # (B, T, 4H): the input's share, all steps at once
            x, c = lstm_recurrence(xw, w_hh, h0[k], c0[k]).unbind(0)  # each (B, T, H): every h_t, every c_t
            h_n.append(x[:, -1])
            c_n.append(c[:, -1])
            if k < L - 1:
                x = F.dropout(x, self.dropout, self.training)
        out = x if self.batch_first else x.transpose(1, 0, 2)
        return out, (stack(h_n), stack(c_n))
