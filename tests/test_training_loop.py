"""gpt/train/loop.py: the optimizer step (rates, accumulation, the hook's place, clipping) and EarlyStopping."""
import math

import numpy as np
import pytest

from gpt.train.loop import EarlyStopping, optimizer_step
from nanograd import Tensor, nn, optim


def _model(seed=0):
    return nn.Linear(3, 2, dtype=np.float64, rng=np.random.default_rng(seed))


def _batches(n, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(4, 3)), rng.normal(size=(4, 2))) for _ in range(n)]


def _mse(model, batch):
    """The mean squared error of model(x) against y: a scalar loss Tensor."""
    x, y = batch
    return ((model(Tensor(x)) - y) ** 2).mean()


def _weights(model):
    return {name: array.copy() for name, array in model.state_dict().items()}


def test_lr_is_one_rate_for_every_group_or_one_per_group():
    model = _model()
    optimizer = optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=1.0)
    batch = _batches(1)[0]
    before = _weights(model)
    optimizer_step(model, optimizer, [0.5, 0.25], lambda: _mse(model, batch), grad_clip=0)
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.25]
    # SGD without momentum: each group moved by its own rate times its gradient.
    np.testing.assert_array_equal(model.weight.data, before["weight"] - 0.5 * model.weight.grad)
    np.testing.assert_array_equal(model.bias.data, before["bias"] - 0.25 * model.bias.grad)
    optimizer_step(model, optimizer, 0.125, lambda: _mse(model, batch), grad_clip=0)
    assert [group["lr"] for group in optimizer.param_groups] == [0.125, 0.125]
    with pytest.raises(ValueError):  # a rate per group means one for each group, no more, no fewer
        optimizer_step(model, optimizer, [0.1], lambda: _mse(model, batch))


def test_accumulated_micro_batches_give_the_mean_loss_and_its_gradients():
    batches = _batches(3)
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, the gradients are kept
    draws = iter(batches)
    loss, norm = optimizer_step(model, optimizer, 0.0, lambda: _mse(model, next(draws)), grad_accum=3,
                                grad_clip=0)
    assert next(draws, None) is None and norm is None  # one call per micro-batch; grad_clip=0: no clipping
    reference = _model()
    mean = (_mse(reference, batches[0]) + _mse(reference, batches[1]) + _mse(reference, batches[2])) / 3
    mean.backward()
    assert loss == pytest.approx(mean.item(), rel=1e-12)
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12)


def test_after_backward_runs_between_backward_and_clipping():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=1.0)
    batch = (np.full((4, 3), 10.0), np.zeros((4, 2)))  # a large loss: its gradient norm is far above 0.5
    before = _weights(model)
    seen = {}

    def after_backward(loss):
        seen["grads"] = [p.grad.copy() for p in model.parameters()]  # complete, and not clipped yet
        seen["stepped"] = any(not np.array_equal(p.data, before[name]) for name, p in model.named_parameters())
        seen["loss"] = loss
        for p in model.parameters():
            p.grad *= 2.0  # what clipping and the step see is what the hook left (the trainer's averaged grads)
        return 123.0

    loss, norm = optimizer_step(model, optimizer, 1.0, lambda: _mse(model, batch), grad_clip=0.5,
                                after_backward=after_backward)
    assert not seen["stepped"]
    assert loss == 123.0 and seen["loss"] == pytest.approx(_mse(_model(), batch).item(), rel=1e-12)
    hook_norm = math.sqrt(sum(float(np.vdot(g, g)) for g in seen["grads"]))
    assert norm == pytest.approx(2.0 * hook_norm, rel=1e-12) and norm > 0.5
    # SGD at lr 1 moved the weights by the clipped gradient: the hook's direction, with norm 0.5.
    moves = [before[name] - p.data for name, p in model.named_parameters()]
    assert math.sqrt(sum(float(np.vdot(m, m)) for m in moves)) == pytest.approx(0.5, rel=1e-5)
    for move, grad in zip(moves, seen["grads"]):
        np.testing.assert_allclose(move, grad * (0.5 / hook_norm), rtol=1e-5)


def test_evaluations_are_due_at_the_start_every_k_steps_and_at_the_end():
    stopper = EarlyStopping(_model(), steps=10, every=4)
    assert [step for step in range(11) if stopper.due(step)] == [0, 4, 8, 10]


def test_the_best_evaluation_weights_come_back_and_the_curve_has_every_point():
    model = _model()
    stopper = EarlyStopping(model, steps=3, every=1)
    for step, score, train_losses in [(0, 1.0, []), (1, 3.0, [2.0, 4.0]), (2, 2.0, [1.0]), (3, 0.5, [0.5])]:
        model.weight.data[...] = step  # the weights this evaluation saw
        stopper.train_losses.extend(train_losses)
        assert stopper.record(step, score, metric=10 * step) is False  # no patience: never stops
    stopper.restore()
    assert stopper.best_step == 1 and stopper.best_score == 3.0
    np.testing.assert_array_equal(model.weight.data, np.full((2, 3), 1.0))
    assert stopper.curve[1:] == [(1, 3.0, 10), (2, 1.0, 20), (3, 0.5, 30)]
    assert stopper.curve[0][0] == 0 and math.isnan(stopper.curve[0][1])  # no training before step 0


def test_the_copy_of_the_best_weights_is_not_changed_by_later_training():
    model = _model()
    stopper = EarlyStopping(model, steps=2, every=1)
    stopper.record(0, 1.0, None)
    best = _weights(model)
    model.weight.data += 1.0  # in place, as an optimizer step changes it
    stopper.record(1, 0.0, None)
    stopper.restore()
    np.testing.assert_array_equal(model.weight.data, best["weight"])


def test_patience_stops_after_that_many_evaluations_without_a_better_score():
    stopper = EarlyStopping(_model(), steps=100, every=1, patience=2)
    # 2 improves on 1 (the count restarts), then 2 and 1.5 are no better: the second of them stops.
    stops = [stopper.record(step, score, None) for step, score in enumerate([1.0, 0.5, 2.0, 2.0, 1.5])]
    assert stops == [False, False, False, False, True]
    assert stopper.best_step == 2


def test_a_tuple_score_breaks_accuracy_ties_by_the_loss():
    stopper = EarlyStopping(_model(), steps=3, every=1)
    for step, (accuracy, loss) in enumerate([(0.5, 1.0), (0.5, 0.8), (0.75, 2.0), (0.75, 2.5)]):
        stopper.record(step, (accuracy, -loss), accuracy)
    assert stopper.best_step == 2 and stopper.best_score == (0.75, -2.0)
