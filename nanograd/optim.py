"""Optimizers, gradient clipping and the learning-rate schedule.

Optimizers update parameters in place from their .grad. Parameters are organised in groups, each
a dict with its own hyperparameters (GPT decays 2-D weights but not biases or LayerNorm gains).
FlatAdamW, the same AdamW with one update per group, lives in flat_adamw.py (an opt-in: models ask for it).
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels
from .kernels import fast_kernel


class Optimizer:
    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for group in groups:
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{type(self).__name__}: unknown hyperparameters {sorted(unknown)} in a param group")
            self.param_groups.append({**defaults, **group, "params": list(group["params"])})
            self._check_hyperparameters(self.param_groups[-1])
        self.state = {}  # id(param) -> dict of that parameter's running statistics

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def _check_hyperparameters(self, group: dict) -> None:
        """Refuse settings that make no sense, as torch.optim does: a negative learning rate climbs the loss."""
        for name in ("lr", "eps", "momentum", "weight_decay"):
            if name in group and not group[name] >= 0:  # `not >=` also catches NaN
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {group[name]}")
        if "betas" in group and len(group["betas"]) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got {group['betas']}")
        for i, beta in enumerate(group.get("betas", ())):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{type(self).__name__}: betas[{i}] must be in [0, 1), got {beta}")

    def zero_grad(self) -> None:
        for p in self._params():
            p.grad = None

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, param, grad, state: dict, group: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyperparameters and running statistics, with parameters referred to by their position."""
        params = self._params()
        state = {i: dict(self.state[id(p)]) for i, p in enumerate(params) if id(p) in self.state}
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": list(range(start, start + n))})
            start += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        if [len(g["params"]) for g in groups] != sizes:
            raise ValueError(f"optimizer state has groups of sizes {[len(g['params']) for g in groups]}, "
                             f"this optimizer has {sizes}")
        params = self._params()
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, saved in state_dict["state"].items():
            param = params[int(i)]
            for name, value in saved.items():
                if isinstance(value, np.ndarray) and value.shape != param.shape:
                    raise ValueError(f"optimizer state {name} of parameter {i} has shape {value.shape}, "
                                     f"the parameter has {param.shape}")
            self.state[id(param)] = {k: np.array(v, dtype=param.dtype) if isinstance(v, np.ndarray) else v
                                     for k, v in saved.items()}


class SGD(Optimizer):
    """p -= lr * (momentum buffer), with buffer = momentum * buffer + grad + weight_decay * p."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _update(self, param, grad, state, group):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param.data
        if group["momentum"]:
            if "momentum_buffer" in state:
                state["momentum_buffer"] *= group["momentum"]
                state["momentum_buffer"] += grad
            else:
                state["momentum_buffer"] = np.array(grad, copy=True)
            grad = state["momentum_buffer"]
        param.data -= group["lr"] * grad


@fast_kernel(kernels.adamw.adamw_step)
def adamw_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    """One AdamW step t >= 1, in place on param, exp_avg (m) and exp_avg_sq (v), elementwise:
        param <- param * (1 - lr * weight_decay)              (decoupled weight decay)
        m     <- beta1 * m + (1 - beta1) * grad
        v     <- beta2 * v + (1 - beta2) * grad^2
        param <- param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    The last line is lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) in the order PyTorch evaluates it."""
    param *= 1 - lr * weight_decay
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    denom = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2**step) + eps
    param -= lr / (1 - beta1**step) * exp_avg / denom


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), exactly as torch.optim.AdamW: each step is
    `adamw_step` above, one call per parameter. It updates each parameter's .data in place and never rebinds
    it; FlatAdamW (flat_adamw.py) computes the same steps in one call per group."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _update(self, param, grad, state, group):
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param.data), exp_avg_sq=np.zeros_like(param.data))
        state["step"] += 1
        beta1, beta2 = group["betas"]
        if not param.data.flags.c_contiguous:
            raise ValueError(f"AdamW needs C-contiguous parameters, got one of shape {param.shape} that is a view")
        adamw_step(param.data, np.ascontiguousarray(grad), state["exp_avg"], state["exp_avg_sq"],
                   group["lr"], beta1, beta2, group["eps"], group["weight_decay"], state["step"])


def newton_schulz(grad, steps: int = 5):
    """The nearest matrix to grad (m, n) with every singular value near 1 (U V^T of grad = U S V^T), by a
    quintic Newton-Schulz iteration on X = grad / |grad|, with Keller Jordan's coefficients (a, b, c):
        X <- a X + (b A + c A^2) X,   A = X X^T          (each singular value s -> a s + b s^3 + c s^5)
    The coefficients push small singular values up fast; the result's lie in about [0.7, 1.2], not at 1,
    which trains as well and needs only 5 steps. Matrix products only, so it is BLAS-fast; on the wide side
    (m <= n), A is the smaller m x m product."""
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = grad.shape[0] > grad.shape[1]
    x = grad.T if tall else grad  # (m, n), m <= n
    x = x / (np.linalg.norm(x) + 1e-7)  # the Frobenius norm bounds the largest singular value: now all <= 1
    for _ in range(steps):
        A = x @ x.T  # (m, m)
        x = a * x + (b * A + c * (A @ A)) @ x
    return (x.T if tall else x).astype(grad.dtype, copy=False)


def _each(fn, arrays):
    return [fn(a) for a in arrays]


class Muon(Optimizer):
    """Muon (Keller Jordan, 2024): momentum SGD whose update for a 2-D weight is orthogonalised, every direction
    of the weight matrix moved by the same amount, so the few directions the gradient favours do not take the
    whole step. For a group with use_muon=True, per 2-D parameter of shape (out, in):
        buf    <- momentum * buf + grad
        update  = newton_schulz(grad + momentum * buf)                          (Nesterov momentum)
        param  <- param * (1 - lr * weight_decay) - lr * sqrt(max(1, out / in)) * update
    Groups with use_muon=False (embeddings, the output head, gains: Muon is made for hidden matrices) take
    AdamW's step, with betas and eps. `lr_scale` in a group multiplies the rate a training loop sets, so one
    schedule drives Muon's rate and AdamW's, which differ (gpt/train/loop.py)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, ns_steps: int = 5):
        defaults = {"lr": lr, "momentum": momentum, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "ns_steps": ns_steps, "use_muon": True, "lr_scale": 1.0}
        super().__init__(params, defaults)
        for group in self.param_groups:
            flat = [p.shape for p in group["params"] if p.ndim != 2]
            if group["use_muon"] and flat:
                raise ValueError(f"Muon orthogonalises 2-D weights only; got shapes {flat} in a use_muon group")
        self.map = _each  # how newton_schulz is applied to the matrices: one after another (see share_work)

    def share_work(self, map_over_ranks) -> None:
        """For data-parallel training, where every rank holds the same averaged gradients: map_over_ranks(fn,
        arrays) -> [fn(a) for a in arrays] on every rank, each rank computing a share of them
        (gpt/train/distributed.py's World.map_shared), so the Newton-Schulz work is split."""
        self.map = map_over_ranks

    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not group["use_muon"]:
                for p in params:
                    AdamW._update(self, p, p.grad, self.state.setdefault(id(p), {}), group)
                continue
            directions = [self._momentum(p, group) for p in params]  # what each matrix is to be orthogonalised
            updates = self.map(lambda d: newton_schulz(d, group["ns_steps"]), directions)
            for p, update in zip(params, updates):
                rows, cols = p.shape
                p.data *= 1 - group["lr"] * group["weight_decay"]
                p.data -= (group["lr"] * max(1.0, rows / cols) ** 0.5) * update

    def _momentum(self, param, group):
        """buf <- momentum * buf + grad; returns grad + momentum * buf (Nesterov's look-ahead)."""
        state = self.state.setdefault(id(param), {})
        if not state:
            state["momentum_buffer"] = np.zeros_like(param.data)
        buf = state["momentum_buffer"]
        buf *= group["momentum"]
        buf += param.grad
        return param.grad + group["momentum"] * buf

def clip_grad_norm_(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    scale = max_norm / (total + 1e-6)  # torch.nn.utils.clip_grad_norm_'s coefficient, to the letter
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


def cosine_lr(step: int, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to max_lr over warmup_steps, cosine decay to min_lr at decay_steps, then min_lr."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(decay_steps - warmup_steps, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)

