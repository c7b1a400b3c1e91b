"""FlatAdamW: AdamW with each parameter group in one flat array, so one adamw_step updates the whole group.

AdamW's update is the same for every element, so a group's parameters can be updated as one array: one
call per group instead of one per parameter (a GPT has a few per layer). Read optim.py's AdamW first: this
is an optimisation of it, tested bit-identical to it (tests/test_nn_optim.py).
"""
from __future__ import annotations

import numpy as np

from .optim import AdamW, adamw_step


class FlatAdamW(AdamW):
    """Building it moves each group's parameters into one contiguous array (their .data become views into it),
    so that one fused adamw_step updates each group per step instead of one call per parameter.

    The updates are AdamW's, bit for bit, and so is state_dict: a checkpoint written by either loads into the
    other. A group takes AdamW's per-parameter update instead (the same numbers, only slower) in a step where
    any of its parameters has no gradient, and from the moment one of its parameters' .data is rebound (e.g.
    by model.to(dtype), or p.data = ...): the new array is updated, never the flat view it replaced.
    Models ask for it in their configure_optimizers (gpt/model.py), so a training loop needs no setup call.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)
        self._flat_groups = [_FlatGroup.adopt(group["params"]) for group in self.param_groups]

    def step(self) -> None:
        for group, flat in zip(self.param_groups, self._flat_groups):
            if flat is not None and flat.is_intact(self.state):
                flat.update(self.state, group)
            else:  # e.g. some parameters without a gradient: they must keep their state untouched
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

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
