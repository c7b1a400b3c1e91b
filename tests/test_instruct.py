"""Instruction fine-tuning (gpt/finetune/instruction_data.py, gpt/finetune/instruction_tuning.py): the template's tokens, masking, the loss,
exact match without generating, generation stopping at the end marker, a grown vocabulary, gpt.chat."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpt import GPT, GPTConfig
from gpt.chat import read_turn
from gpt.generate import stream_text
from gpt.finetune.instruction_data import (END, IGNORE, InstructVocab, collate, encode_record, format_prompt, greedy_correct,
                          grow_token_embeddings)
from gpt.finetune.instruction_tuning import (fine_tune, length_buckets, load_instruct_model, response_loss,
                                            save_instruct_checkpoint)
from gpt.experiments.copy_probe import copy_probe
from gpt.experiments.play_instructions import Record, make_records
from tokenizer import BPETokenizer, CharTokenizer

PLAY_CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ:,.;!?'-\n"
REPO = Path(__file__).resolve().parent.parent
RECORDS = make_records({"test": 3}, seed=0)["test"]  # 3 of each family: real records with and without input


def char_vocab(texts=()):
    tok = CharTokenizer().train(PLAY_CHARS)
    return InstructVocab.for_texts(tok, tok.vocab_size, list(texts))


def test_a_char_vocabulary_gains_the_marker_and_the_characters_it_lacks():
    vocab = char_vocab(["3 + 4"])
    assert vocab.added == [END, "#", "+", "3", "4"]  # "#" from the template, the rest from the text
    assert vocab.end_id == vocab.base_size == len(PLAY_CHARS) and vocab.size == vocab.base_size + 5
    text = format_prompt("Add 3 + 4.") + "4" + END
    ids = vocab.encode(text)
    assert ids[-1] == vocab.end_id and ids.count(vocab.end_id) == 1
    assert vocab.decode(ids) == text
    bpe = BPETokenizer().train("### Instruction:\nWho speaks next?\n" * 20, vocab_size=270)
    bpe_vocab = InstructVocab.for_texts(bpe, bpe.vocab_size, ["anything \u00e9"])
    assert bpe_vocab.added == [END]  # bytes spell any text
    assert bpe_vocab.decode(bpe_vocab.encode("caf\u00e9 " + END)) == "caf\u00e9 " + END


def test_growing_the_vocabulary_keeps_old_tokens_and_starts_new_ones_at_the_mean():
    model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=8), seed=0)
    idx = np.array([[1, 5, 7, 2]])
    before = model(idx)[0].data
    old = model.transformer.wte.weight.data.copy()
    grow_token_embeddings(model, 14)
    after = model(idx)[0].data
    assert model.config.vocab_size == 14 and after.shape == (1, 4, 14)
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    np.testing.assert_array_equal(model.transformer.wte.weight.data[:11], old)
    np.testing.assert_allclose(model.transformer.wte.weight.data[11:], np.tile(old.mean(0), (3, 1)), rtol=1e-6)
    np.testing.assert_array_equal(after[..., :11], before)  # the old tokens' logits are untouched
    # Tied head: a mean row's logit is the mean of the old logits (float32 sums: 1e-5 is a few roundings).
    np.testing.assert_allclose(after[..., 11:], np.repeat(before.mean(-1, keepdims=True), 3, -1), atol=1e-5)
    assert len(model.parameters()) == len(GPT(model.config).parameters())
    with pytest.raises(ValueError, match="cannot shrink"):
        grow_token_embeddings(model, 5)


@given(st.lists(st.integers(0, len(RECORDS) - 1), min_size=1, max_size=6), st.booleans(), st.integers(0, 5))
def test_masking_ignores_exactly_the_prompt_and_the_padding(picks, mask_prompt, extra_length):
    vocab = char_vocab(r.instruction + r.input + r.output for r in RECORDS)
    encoded = [encode_record(vocab, RECORDS[i]) for i in picks]
    T = max(len(ids) for ids, _ in encoded) - 1 + extra_length
    x, y = collate(encoded, pad_id=vocab.end_id, mask_prompt=mask_prompt, length=T)
    assert x.shape == y.shape == (len(picks), T)
    for row, (i, (ids, n_prompt)) in enumerate(zip(picks, encoded)):
        r = RECORDS[i]
        assert n_prompt == len(vocab.encode(format_prompt(r.instruction, r.input)))
        n = len(ids) - 1
        for t in range(T):
            in_prompt = t < n_prompt - 1  # y[t] predicts token t + 1: the response starts at t = n_prompt - 1
            if t >= n:
                assert x[row, t] == vocab.end_id and y[row, t] == IGNORE  # padding
            elif in_prompt and mask_prompt:
                assert x[row, t] == ids[t] and y[row, t] == IGNORE
            else:
                assert x[row, t] == ids[t] and y[row, t] == ids[t + 1]
        counted = y[row][y[row] != IGNORE]
        if mask_prompt:  # exactly the response and the end marker
            assert vocab.decode(counted) == r.output + END


def test_the_batch_loss_is_the_mean_over_response_tokens_only():
    vocab = char_vocab(r.instruction + r.input + r.output for r in RECORDS)
    model = GPT(GPTConfig(block_size=400, vocab_size=vocab.base_size, n_layer=1, n_head=2, n_embd=16), seed=1)
    grow_token_embeddings(model, vocab.size)
    encoded = [encode_record(vocab, r) for r in RECORDS[::4]]
    x, y = collate(encoded, pad_id=vocab.end_id)
    logits, loss = model(x, y)
    logits = logits.data.astype(np.float64)
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    terms = []
    for row, (ids, n_prompt) in enumerate(encoded):  # positions n_prompt - 1 ... predict the response
        terms += [-log_probs[row, t, ids[t + 1]] for t in range(n_prompt - 1, len(ids) - 1)]
    # float32 forward against a float64 sum of the same terms: agreement to 1e-5 relative.
    np.testing.assert_allclose(loss.item(), np.mean(terms), rtol=1e-5)
    assert len(terms) == sum(len(vocab.encode(r.output)) + 1 for r in RECORDS[::4])
    np.testing.assert_allclose(response_loss(model, encoded), loss.item(), rtol=1e-5)


@pytest.fixture(scope="module")
def memorized():
    """A tiny model fine-tuned until it answers its four training records, and its vocabulary."""
    records = [Record("Who speaks first?", "", "BERNARDO", "x", "p", 0),
               Record("Who speaks next?", "HAMLET:\nTo be.", "OPHELIA", "x", "p", 0),
               Record("How many?", "A:\nb\n\nC:\nd", "2", "x", "p", 0),
               Record("Say yes.", "", "Yes", "x", "p", 0)]
    vocab = char_vocab(r.instruction + r.input + r.output for r in records)
    model = GPT(GPTConfig(block_size=96, vocab_size=vocab.base_size, n_layer=1, n_head=2, n_embd=32), seed=0)
    grow_token_embeddings(model, vocab.size)
    encoded = [encode_record(vocab, r) for r in records]
    result = fine_tune(model, vocab, encoded, encoded, steps=150, batch_size=4, lr=1e-2,
                       rng=np.random.default_rng(0), eval_every=25, warmup=5)
    return model, vocab, records, encoded, result


def test_exact_match_without_generating_agrees_with_greedy_generation(memorized):
    model, vocab, records, encoded, result = memorized
    assert result.best_val_loss < 0.05  # memorized
    wrong = [Record(r.instruction, r.input, r.output[:-1] + "X", "x", "p", 0) for r in records]
    candidates = records + wrong
    fast = greedy_correct(model, [encode_record(vocab, r) for r in candidates], batch_size=3)
    generated = ["".join(stream_text(model, vocab, format_prompt(r.instruction, r.input), 20, temperature=0,
                                     stop_id=vocab.end_id)) for r in candidates]
    assert list(fast) == [g == r.output for g, r in zip(generated, candidates)]
    assert fast.tolist() == [True] * 4 + [False] * 4


def test_generation_stops_at_the_end_marker(memorized):
    model, vocab, records, _, _ = memorized
    prompt = format_prompt(records[0].instruction)
    assert "".join(stream_text(model, vocab, prompt, 30, temperature=0, stop_id=vocab.end_id)) == "BERNARDO"
    # Without a stop id, the same stream runs on through the marker to the token limit.
    pieces = list(stream_text(model, vocab, prompt, 30, temperature=0))
    assert len(pieces) == 30 and "".join(pieces).startswith("BERNARDO" + END)


def test_early_stopping_keeps_the_best_weights_and_checkpoints_round_trip(memorized, tmp_path):
    model, vocab, records, encoded, result = memorized
    assert min(val for _, _, val in result.curve) == result.best_val_loss
    np.testing.assert_allclose(response_loss(model, encoded), result.best_val_loss, rtol=1e-5)
    tok_file = vocab.tok.save(tmp_path / "chars")
    save_instruct_checkpoint(tmp_path / "ckpt", model, vocab, tok_file, step=150)
    loaded, loaded_vocab, tuned = load_instruct_model(tmp_path / "ckpt")
    assert tuned and loaded_vocab.added == vocab.added and loaded_vocab.end_id == vocab.end_id
    assert greedy_correct(loaded, encoded).all()


def test_chat_reads_turns_of_instruction_and_optional_input():
    lines = iter(["Say yes.", "", "Who speaks next?", "A:", "b", "", "C:", "d", "", "", "", "Last one.", ""])
    assert read_turn(lines) == ("Say yes.", "")
    assert read_turn(lines) == ("Who speaks next?", "A:\nb\n\nC:\nd")  # one blank line stays inside the input
    assert read_turn(lines) == ("Last one.", "")  # blank lines between turns are skipped
    assert read_turn(lines) is None
    assert read_turn(iter(["Unfinished", "input without its blank lines"])) == ("Unfinished",
                                                                               "input without its blank lines")


def test_chat_runs_end_to_end_on_a_checkpoint_with_piped_input(memorized, tmp_path):
    model, vocab, _, _, _ = memorized
    save_instruct_checkpoint(tmp_path / "ckpt", model, vocab, vocab.tok.save(tmp_path / "chars"), step=150)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    turns = "Who speaks first?\n\nWho speaks next?\nHAMLET:\nTo be.\n\n\nSay yes.\n"
    run = subprocess.run([sys.executable, "-m", "gpt.chat", "--ckpt", str(tmp_path / "ckpt")], input=turns,
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "### Response:\nBERNARDO\n\n### Response:\nOPHELIA\n\n### Response:\nYes\n\n"
    missing = subprocess.run([sys.executable, "-m", "gpt.chat", "--ckpt", str(tmp_path / "nothing")], input="",
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: no checkpoint at {tmp_path / 'nothing'}"


def test_length_buckets_draw_every_record_once_a_pool_in_batches_of_like_length():
    lengths = np.arange(40) % 7 + 50
    batches = length_buckets(lengths, 4, np.random.default_rng(0), pool=5)
    pool = [next(batches) for _ in range(5)]  # one pool: 20 distinct records in 5 batches of 4
    drawn = np.concatenate(pool)
    assert all(len(b) == 4 for b in pool) and len(set(drawn.tolist())) == 20
    spans = sorted((lengths[b].min(), lengths[b].max()) for b in pool)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))  # sorted by length, then cut
    assert len(next(length_buckets(lengths[:3], 4, np.random.default_rng(0)))) == 3  # fewer records than a batch


def test_the_copy_probe_scores_the_first_reading_as_the_model_s_own_loss():
    model = GPT(GPTConfig(block_size=32, vocab_size=20, n_layer=1, n_head=2, n_embd=16), seed=0)
    ids = list(np.random.default_rng(0).integers(0, 20, 10))
    first, second = copy_probe(model, [ids])
    with model.evaluating():  # causal: the first half of the doubled sequence is the sequence alone
        own = model(np.asarray([ids[:-1]]), np.asarray([ids[1:]]))[1].item()
    np.testing.assert_allclose(first, own, rtol=1e-5)
    assert np.isfinite(second)


def test_arms_side_by_side_train_as_they_do_one_after_the_other():
    """train_arms in two processes of one thread each returns what it returns in this process on one thread:
    the same weights bit for bit (each arm's arithmetic is its own), the same scores, both arms labelled."""
    import numba

    import nanograd
    from gpt.experiments.instruct_arms import Arm, train_arms

    records = [Record("How many?", "A:\nb\n\nC:\nd", "2", "x", "p", 0), Record("Say yes.", "", "Yes", "x", "p", 0)]
    vocab = char_vocab(r.instruction + r.input + r.output for r in records)
    pretrained = GPT(GPTConfig(block_size=96, vocab_size=vocab.base_size, n_layer=1, n_head=2, n_embd=16), seed=0)
    grow_token_embeddings(pretrained, vocab.size)
    encoded = [encode_record(vocab, r) for r in records]
    arms = [Arm("fine-tuned", True, True, 1e-2), Arm("from scratch", False, True, 1e-2)]
    settings = dict(steps=6, batch_size=2, eval_every=3, patience=None)
    args = (arms, pretrained.config, pretrained.state_dict(), vocab, (encoded, encoded, encoded), settings, 0)
    threads = numba.get_num_threads()
    nanograd.set_num_threads(1)
    try:
        alone = train_arms(*args, workers=1, progress=False)
    finally:
        nanograd.set_num_threads(threads)
    together = train_arms(*args, workers=2, progress=False)
    assert list(alone) == list(together) == ["fine-tuned", "from scratch"]
    for method in alone:
        assert alone[method].correct.tolist() == together[method].correct.tolist()
        np.testing.assert_array_equal(alone[method].result.curve, together[method].result.curve)  # NaN: no loss yet
        for name, array in alone[method].state.items():
            np.testing.assert_array_equal(array, together[method].state[name], err_msg=f"{method}: {name}")
    assert not np.array_equal(alone["fine-tuned"].state["lm_head.weight"], alone["from scratch"].state["lm_head.weight"])
