"""Optimizers, gradient clipping and the learning-rate schedule.

Optimizers update parameters in place from their .grad. Parameters are organised in groups, each
a dict with its own hyperparameters (GPT decays 2-D weights but not biases or LayerNorm gains).
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
    `adamw_step` above, for every parameter.

    The update is the same for every element, so each group is stored flat (see _FlatGroup): the
    parameters' values and moments are views into one array each, the gradients are gathered into one, and
    a single adamw_step updates the whole group instead of one call per parameter.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        self._flat_groups = [_FlatGroup.adopt(group["params"]) for group in self.param_groups]

    def step(self) -> None:
        for group, flat in zip(self.param_groups, self._flat_groups):
            if flat is not None and flat.is_intact(self.state):
                flat.update(self.state, group)
            else:  # e.g. some parameters without a gradient: they must keep their state untouched
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, param, grad, state, group):
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param.data), exp_avg_sq=np.zeros_like(param.data))
        state["step"] += 1
        beta1, beta2 = group["betas"]
        if not param.data.flags.c_contiguous:
            raise ValueError(f"AdamW needs C-contiguous parameters, got one of shape {param.shape} that is a view")
        adamw_step(param.data, np.ascontiguousarray(grad), state["exp_avg"], state["exp_avg_sq"],
                   group["lr"], beta1, beta2, group["eps"], group["weight_decay"], state["step"])

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for flat in self._flat_groups:
            if flat is not None:
                flat.take_moments(self.state)


class _FlatGroup:
    """A parameter group living in flat arrays: `data`, `exp_avg`, `exp_avg_sq`, each one array with a view
    per parameter, and `grad`, into which each step gathers the parameters' gradients. Parameters keep their
    shapes; their .data becomes a view into `data`. The moments start at zero: views into them stand in the
    optimizer's per-parameter state, so state_dict is unchanged.

    The flat path is taken only while everything still points into these arrays (`is_intact`): a parameter
    replaced (model.to(dtype)), a gradient missing, or moments loaded from elsewhere fall back to the
    per-parameter update, which computes the same thing."""

    def __init__(self, params, data):
        self.params, self.data = params, data
        self.grad, self.exp_avg, self.exp_avg_sq = np.zeros_like(data), np.zeros_like(data), np.zeros_like(data)
        self.views = {name: [] for name in ("data", "exp_avg", "exp_avg_sq")}
        offset = 0
        for p in params:
            for name, views in self.views.items():
                views.append(getattr(self, name)[offset : offset + p.data.size].reshape(p.shape))
            offset += p.data.size

    @classmethod
    def adopt(cls, params):
        """Move params (one dtype, each listed once) into flat storage; None if they cannot share it."""
        if len({p.dtype for p in params}) != 1 or len({id(p) for p in params}) != len(params):
            return None
        flat = cls(params, np.concatenate([p.data.reshape(-1) for p in params]))
        for p, data in zip(params, flat.views["data"]):
            p.data = data
        return flat

    def is_intact(self, state: dict) -> bool:
        views = self.views
        for i, p in enumerate(self.params):
            if p.data is not views["data"][i] or p.grad is None:
                return False
            saved = state.get(id(p))
            if saved is not None and (saved["exp_avg"] is not views["exp_avg"][i]
                                      or saved["exp_avg_sq"] is not views["exp_avg_sq"][i]):
                return False
        steps = {state[id(p)]["step"] if id(p) in state else 0 for p in self.params}
        return len(steps) == 1

    def update(self, state: dict, group: dict) -> None:
        for i, p in enumerate(self.params):
            saved = state.setdefault(id(p), {"step": 0, "exp_avg": self.views["exp_avg"][i],
                                             "exp_avg_sq": self.views["exp_avg_sq"][i]})
            saved["step"] += 1
        np.concatenate([p.grad.reshape(-1) for p in self.params], out=self.grad)  # the gradients, gathered
        beta1, beta2 = group["betas"]
        adamw_step(self.data, self.grad, self.exp_avg, self.exp_avg_sq, group["lr"], beta1, beta2, group["eps"],
                   group["weight_decay"], state[id(self.params[0])]["step"])

    def take_moments(self, state: dict) -> None:
        """After loading a state dict: copy the loaded moments into the flat arrays and use the views."""
        for i, p in enumerate(self.params):
            saved = state.get(id(p))
            if saved is not None:
                for name in ("exp_avg", "exp_avg_sq"):
                    self.views[name][i][...] = saved[name]
                    saved[name] = self.views[name][i]


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
