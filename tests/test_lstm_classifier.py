"""LSTMClassifier (gpt.finetune.lstm_classifier), the slanted triangular schedule and fit's `schedule` (gpt.finetune.classifier)."""
import numpy as np
import pytest

import nanograd
from gpt.finetune.classifier import fit, slanted_triangular
from gpt.lstm import LSTMConfig, LSTMLM
from gpt.finetune.lstm_classifier import LSTMClassifier, concat_pool


def tiny_lm(dtype=np.float32, n_layer=2, tie_weights=True):
    config = LSTMConfig(vocab_size=11, n_layer=n_layer, n_embd=6, n_hidden=5, tie_weights=tie_weights)
    return LSTMLM(config, seed=0).to(dtype)


def tiny_classifier(dtype=np.float32, n_layer=2):
    return LSTMClassifier(tiny_lm(dtype, n_layer), n_classes=3, seed=1, head_width=4)


def test_shapes_and_the_loss():
    clf = tiny_classifier()
    idx, labels = np.random.default_rng(0).integers(0, 11, (4, 7)), np.array([0, 2, 1, 2])
    logits, loss = clf(idx, labels)
    assert logits.shape == (4, 3) and loss.shape == ()
    assert clf(idx)[1] is None
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        clf(idx, np.array([0, 1, 2, 3]))


def test_concat_pooling_is_last_max_and_mean_and_the_head_reads_it():
    clf = tiny_classifier().eval()  # no dropout, so the logits are a function of the pooled states
    idx = np.random.default_rng(0).integers(0, 11, (3, 7))
    hidden = clf.trunk.hidden_states(idx).data  # (3, 7, 5)
    features = np.concatenate([hidden[:, -1], hidden.max(axis=1), hidden.mean(axis=1)], axis=-1)  # (3, 15)
    pooled = concat_pool(nanograd.Tensor(hidden)).data
    np.testing.assert_array_equal(pooled[:, :10], features[:, :10])  # the last state and the maximum: exact
    np.testing.assert_allclose(pooled[:, 10:], features[:, 10:], rtol=1e-6)  # a float32 mean of 7, summed in its order
    x = np.maximum(features @ clf.head_hidden.weight.data.T + clf.head_hidden.bias.data, 0.0)
    expected = x @ clf.head_out.weight.data.T + clf.head_out.bias.data
    # float32 sums of 15 and 4 products in another order than NumPy's: a few ulps of values ~0.1-1.
    np.testing.assert_allclose(clf(idx)[0].data, expected, rtol=1e-5, atol=1e-6)


def test_gradients_pass_gradcheck_in_float64():
    clf = tiny_classifier(np.float64).eval()  # eval: the dropout masks would change between evaluations
    rng = np.random.default_rng(0)
    idx, labels = rng.integers(0, 11, (4, 6)), np.array([0, 2, 1, 2])
    head = clf.layer_groups()[0]
    assert nanograd.gradcheck(lambda *_: clf(idx, labels)[1], head)
    # Through the pooling (the max picks one time step per feature) into both LSTM layers and the embedding.
    assert nanograd.gradcheck(lambda *_: clf(idx, labels)[1], clf.parameters(), projections=4)


def test_the_head_dropout_is_on_in_training_only():
    clf = tiny_classifier()
    idx = np.random.default_rng(0).integers(0, 11, (8, 6))
    nanograd.manual_seed(0)
    assert not np.array_equal(clf(idx)[0].data, clf.eval()(idx)[0].data)
    assert np.array_equal(clf(idx)[0].data, clf(idx)[0].data)  # eval mode is deterministic


@pytest.mark.parametrize("n_layer", [1, 3])
def test_layer_groups_cover_every_parameter_once_top_down_without_the_decoder(n_layer):
    lm = tiny_lm(n_layer=n_layer)
    clf = LSTMClassifier(lm, n_classes=3)
    groups = clf.layer_groups()
    assert len(groups) == 1 + n_layer + 1  # head; each LSTM layer; embedding
    flat = [id(p) for params in groups for p in params]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(id(p) for p in clf.parameters())
    assert groups[1] == lm.rnns[-1].parameters() and groups[-2] == lm.rnns[0].parameters()
    assert groups[-1] == [lm.encoder.weight]  # shared with the language model, not copied
    assert id(lm.proj.weight) not in flat and id(lm.decoder.bias) not in flat
    assert hasattr(lm, "decoder") and hasattr(lm, "proj")  # the language model itself is left whole
    rates = [g["lr"] for g in clf.configure_optimizer(lr=1e-3, lr_decay=2.0).param_groups]
    assert rates == pytest.approx([1e-3 / 2.0**k for k in range(len(groups))])


def _toy_task(n, rng):
    """Passages whose class is which third of the vocabulary their tokens come from."""
    labels = np.arange(n) % 3
    return rng.integers(0, 3, (n, 6)) + 3 * labels[:, None] + 1, labels


def test_gradual_unfreezing_goes_from_the_head_down_to_the_embedding():
    clf = tiny_classifier()  # 4 groups: head; top LSTM layer; bottom LSTM layer; embedding
    groups = clf.layer_groups()
    rng = np.random.default_rng(0)
    train = _toy_task(24, rng)
    trainable, changed, last = [], [], {id(p): p.data.copy() for p in clf.parameters()}

    def record(step):
        trainable.append([all(p.requires_grad for p in params) for params in groups])
        changed.append([any(not np.array_equal(p.data, last[id(p)]) for p in params) for params in groups])
        last.update({id(p): p.data.copy() for p in clf.parameters()})

    fit(clf, clf.configure_optimizer(lr=1e-2), train, train, steps=8, batch_size=8, eval_every=2, rng=rng,
        unfreeze_every=2, on_eval=record)
    # Evaluations at steps 0, 2, 4, 6, 8: one more group trains every 2 steps, from the top.
    assert trainable == [[True, False, False, False], [True, False, False, False], [True, True, False, False],
                         [True, True, True, False], [True, True, True, True]]
    assert changed[1:] == trainable[1:]  # exactly the trainable groups moved in the steps before each evaluation


def test_the_slanted_triangular_schedule_rises_to_the_peak_at_the_cut_and_decays_to_peak_over_ratio():
    total, peak = 200, 0.01
    rates = np.array([slanted_triangular(t, total, peak) for t in range(total + 1)])
    cut = 20  # cut_frac 0.1
    assert rates[0] == pytest.approx(peak / 32) and rates[total] == pytest.approx(peak / 32)
    assert rates[cut] == pytest.approx(peak) and rates.argmax() == cut
    np.testing.assert_allclose(np.diff(rates[: cut + 1]), (peak - peak / 32) / cut)  # a straight rise
    np.testing.assert_allclose(np.diff(rates[cut:]), -(peak - peak / 32) / (total - cut))  # a straight decay
    assert slanted_triangular(5, 100, 1.0, cut_frac=0.5, ratio=2) == pytest.approx(0.55)  # (1 + 0.1) / 2
    with pytest.raises(ValueError, match=r"iteration t must be in \[0, total=10\], got 11"):
        slanted_triangular(11, 10, 1.0)
    with pytest.raises(ValueError, match="cut_frac must be in"):
        slanted_triangular(0, 10, 1.0, cut_frac=1.0)


def test_fit_scales_every_group_rate_by_the_schedule():
    clf = tiny_classifier()
    rng = np.random.default_rng(0)
    train = _toy_task(24, rng)
    optimizer = clf.configure_optimizer(lr=1e-2, lr_decay=2.0)
    start = [g["lr"] for g in optimizer.param_groups]
    seen = []
    fit(clf, optimizer, train, train, steps=6, batch_size=8, eval_every=1, rng=rng,
        on_eval=lambda step: seen.append([g["lr"] for g in optimizer.param_groups]),
        schedule=lambda t: slanted_triangular(t, 6, 1.0))
    for step, rates in enumerate(seen[1:], start=1):  # after step s, the rates of iteration s - 1
        assert rates == pytest.approx([r * slanted_triangular(step - 1, 6, 1.0) for r in start])
