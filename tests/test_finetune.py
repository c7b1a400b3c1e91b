"""GPTClassifier and fit (gpt.finetune.classifier)."""
import numpy as np
import pytest

import nanograd
from gpt.finetune.classifier import GPTClassifier, fit
from gpt.model import GPT, GPTConfig


def tiny_classifier(dtype=np.float32, n_layer=2):
    trunk = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=n_layer, n_head=2, n_embd=8), seed=0)
    return GPTClassifier(trunk.to(dtype), n_classes=3, seed=1)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_head_gradients_pass_gradcheck_in_float64(pool):
    clf = tiny_classifier(np.float64)
    clf.pool = pool
    rng = np.random.default_rng(0)
    idx, labels = rng.integers(0, 11, (4, 6)), np.array([0, 2, 1, 2])
    head = [clf.head.weight, clf.head.bias]
    assert nanograd.gradcheck(lambda *_: clf(idx, labels)[1], head)
    assert nanograd.gradcheck(lambda *_: clf(idx)[0], head, seed=1)
    # The trunk's gradients reach through the pooled hidden states too (random directions:
    # checking each of its ~1,600 elements would take two forward passes per element).
    assert nanograd.gradcheck(lambda *_: clf(idx, labels)[1], clf.parameters(), projections=4)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_the_head_reads_the_pooled_hidden_states(pool):
    clf = tiny_classifier()
    clf.pool = pool
    idx = np.random.default_rng(0).integers(0, 11, (3, 5))
    hidden = clf.trunk.hidden_states(idx).data  # (3, 5, 8)
    features = hidden.mean(axis=1) if pool == "mean" else hidden[:, -1]
    expected = features @ clf.head.weight.data.T + clf.head.bias.data
    # float32 sums of 8 products, compared with NumPy's own order: a few ulps of values ~1e-2.
    np.testing.assert_allclose(clf(idx)[0].data, expected, rtol=1e-5, atol=1e-7)
    assert clf(idx)[0].shape == (3, 3)


def test_a_passage_longer_than_the_context_is_read_in_windows():
    clf = tiny_classifier()  # block_size 8
    idx = np.random.default_rng(0).integers(0, 11, (2, 24))
    windows = [clf.trunk.hidden_states(idx[:, i : i + 8]).data for i in (0, 8, 16)]  # each (2, 8, 8)
    expected = np.concatenate(windows, axis=1).mean(axis=1) @ clf.head.weight.data.T + clf.head.bias.data
    np.testing.assert_allclose(clf(idx)[0].data, expected, rtol=1e-5, atol=1e-7)  # as above
    with pytest.raises(ValueError, match="passage of 12 tokens .* must be a multiple of 8"):
        clf(idx[:, :12])
    clf64 = tiny_classifier(np.float64)  # the gradients reach every window
    assert nanograd.gradcheck(lambda *_: clf64(idx[:, :16], np.array([0, 2]))[1], clf64.parameters(), projections=2)


def test_unknown_pooling_is_named():
    trunk = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match="pool must be one of mean, last, got 'max'"):
        GPTClassifier(trunk, 3, pool="max")


def test_frozen_parameters_stay_bit_identical_after_a_step():
    clf = tiny_classifier()
    groups = clf.layer_groups()
    clf.set_trainable(2)  # the head, and the last block with ln_f
    optimizer = clf.configure_optimizer(lr=1e-2)
    frozen = [p for params in groups[2:] for p in params]
    trained = [p for params in groups[:2] for p in params]
    before = {id(p): p.data.copy() for p in clf.parameters()}
    idx, labels = np.random.default_rng(0).integers(0, 11, (4, 6)), np.array([0, 1, 2, 0])
    optimizer.zero_grad()
    clf(idx, labels)[1].backward()
    optimizer.step()
    assert all(p.grad is None for p in frozen)  # no graph was built through them
    assert all(np.array_equal(p.data, before[id(p)]) for p in frozen)
    assert all(not np.array_equal(p.data, before[id(p)]) for p in trained)


def test_layer_groups_cover_every_parameter_once_and_rates_fall_down_the_stack():
    clf = tiny_classifier(n_layer=3)
    groups = clf.layer_groups()
    assert len(groups) == 1 + 3 + 1  # head; ln_f + top block; two blocks; embeddings
    flat = [id(p) for params in groups for p in params]
    assert sorted(flat) == sorted(id(p) for p in clf.parameters())
    rates = [g["lr"] for g in clf.configure_optimizer(lr=1e-3, lr_decay=2.0).param_groups]
    assert rates == pytest.approx([1e-3 / 2.0**k for k in range(5)])
    with pytest.raises(ValueError, match=r"n_groups must be in \[1, 5\]"):
        clf.set_trainable(6)


def test_bad_labels_are_named():
    clf = tiny_classifier()
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        clf(np.zeros((2, 4), np.int64), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        clf(np.zeros((2, 4), np.int64), np.array([0]))


def _toy_task(n, rng):
    """Passages whose class is which third of the vocabulary their tokens come from."""
    labels = np.arange(n) % 3
    return rng.integers(0, 3, (n, 6)) + 3 * labels[:, None] + 1, labels


def test_fit_keeps_the_weights_of_its_best_validation_accuracy():
    clf = tiny_classifier()
    rng = np.random.default_rng(0)
    train, val = _toy_task(48, rng), _toy_task(12, rng)
    snapshots = {}
    result = fit(clf, clf.configure_optimizer(lr=3e-2, lr_decay=1.0), train, val, steps=30, batch_size=8,
                 eval_every=5, rng=rng, on_eval=lambda step: snapshots.update({step: clf.state_dict()[
                     "head.weight"].copy()}))
    assert [point[0] for point in result.curve] == [0, 5, 10, 15, 20, 25, 30]
    assert result.curve[-1][2] > 0.9  # a task this easy is learnt, so the check below is not vacuous
    assert np.array_equal(clf.head.weight.data, snapshots[result.best_step])
    predicted, loss = clf.evaluate(*val)
    assert np.mean(predicted == val[1]) == result.best_val_accuracy == max(point[2] for point in result.curve)
    assert loss == pytest.approx(result.best_val_loss, rel=1e-6)
    assert result.best_step > 0


def test_fit_with_gradual_unfreezing_leaves_the_trunk_alone_until_its_turn():
    clf = tiny_classifier()  # 4 groups: head; ln_f + top block; the block below; embeddings
    rng = np.random.default_rng(0)
    train = _toy_task(24, rng)
    trunk_before = {name: a.copy() for name, a in clf.trunk.state_dict().items()}
    fit(clf, clf.configure_optimizer(lr=1e-2), train, train, steps=4, batch_size=8, eval_every=4, rng=rng,
        unfreeze_every=5)  # 4 steps, all within the head-only phase
    assert all(np.array_equal(a, trunk_before[name]) for name, a in clf.trunk.state_dict().items())
    assert all(p.requires_grad for p in clf.parameters())  # everything trainable again afterwards


def test_gpt_fine_tuning_computes_what_it_did_before_the_classifier_base_and_schedules():
    """The genre figures depend on fit and GPTClassifier: what 12 steps of gradual unfreezing leave, recorded in
    float64 on code whose float32 weights were bit-identical (on one machine) to those of the code before the
    Classifier base and `schedule` were added.

    Not a bit pin: OpenBLAS picks its kernels per CPU, and their products round differently. In float64 these
    fingerprints agreed to 5e-16 (relative) across OpenBLAS's SkylakeX, Haswell, Sandybridge and Nehalem kernels
    (OPENBLAS_CORETYPE); rel=1e-9 leaves six orders of room for other CPUs. Planted regressions move them by far
    more: unfreezing each group one step later, clipping at 0.5 instead of 1.0, or keeping the last weights
    instead of the best each fail here (checked by hand)."""
    clf = tiny_classifier(np.float64)
    rng = np.random.default_rng(0)
    labels = np.arange(36) % 3
    ids = rng.integers(0, 3, (36, 6)) + 3 * labels[:, None] + 1
    result = fit(clf, clf.configure_optimizer(lr=1e-2), (ids[:24], labels[:24]), (ids[24:], labels[24:]),
                 steps=12, batch_size=8, eval_every=3, rng=rng, unfreeze_every=2)
    state = sorted(clf.state_dict().items())
    norms = [np.sqrt(sum((a ** 2).sum() for name, a in state if name.startswith(part))) for part in ("head", "trunk")]
    directions = np.random.default_rng(1)  # one random direction through every weight: moves if any weight does
    projection = sum((a * directions.standard_normal(a.shape)).sum() for _, a in state)
    assert result.best_step == 9
    assert norms == pytest.approx([0.3045014760000145, 6.423093509611374], rel=1e-9)
    assert projection == pytest.approx(1.1068113102728998, rel=1e-9)
    assert [point[1] for point in result.curve[1:]] == pytest.approx(
        [1.0787549289468543, 1.0357793533047943, 0.9876913600413735, 0.7941466959919353], rel=1e-9)
