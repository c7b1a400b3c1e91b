"""The compiled path (numba: pretokenizer, encoder, decoder, trainer) against the plain-Python reference
(reference.py) it replaces: same ids, same bytes, same merges, same errors; the switch between them; the
piece cache's bound. Ids against tiktoken itself are in test_tokenizer_bpe.py and test_tokenizer_files.py.
"""
import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_tokenizer_bpe import CORPUS, texts
from tests.tokenizer_texts import multilingual_text
from tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer
from tokenizer.encoder import PieceCache

# The two scanned patterns, no split, and a pattern the scanner does not know (split by `regex`).
PATTERNS = {"gpt4": GPT4_SPLIT_PATTERN, "gpt2": GPT2_SPLIT_PATTERN, "none": None, "other": r"\w+|\s+|[^\w\s]+"}
SHORT_TEXT = CORPUS + multilingual_text(3000)


@functools.cache
def twins(pattern):
    """(compiled, reference) tokenizers with the same merges, trained by the compiled trainer (cached: tests
    that change them call twins.__wrapped__)."""
    compiled = BPETokenizer(pattern, compiled=True).train(SHORT_TEXT, 400)
    reference = BPETokenizer._from_parts(pattern, compiled.byte_ids, compiled.merges, {})
    reference.compiled = False
    return compiled, reference


@pytest.mark.parametrize("name", PATTERNS)
@settings(max_examples=20)
@given(text=texts, n_merges=st.integers(0, 60))
def test_compiled_trainer_makes_the_references_merges(name, text, n_merges):
    compiled = BPETokenizer(PATTERNS[name], compiled=True).train(text, 256 + n_merges)
    reference = BPETokenizer(PATTERNS[name], compiled=False).train(text, 256 + n_merges)
    assert compiled.merges == reference.merges


@pytest.mark.parametrize("vocab_size", [300, 1024])
def test_compiled_trainer_makes_the_references_merges_on_many_languages(vocab_size):
    text = multilingual_text(40_000)
    compiled = BPETokenizer(GPT4_SPLIT_PATTERN, compiled=True).train(text, vocab_size)
    assert compiled.merges == BPETokenizer(GPT4_SPLIT_PATTERN, compiled=False).train(text, vocab_size).merges
    assert len(compiled.merges) == vocab_size - 256


@pytest.mark.parametrize("name", PATTERNS)
@given(text=texts)
def test_compiled_encode_and_decode_match_the_reference(name, text):
    compiled, reference = twins(PATTERNS[name])
    ids = compiled.encode_ordinary(text)
    assert ids == reference.encode_ordinary(text)
    assert compiled.decode_bytes(ids) == reference.decode_bytes(ids) == text.encode("utf-8")


@pytest.mark.parametrize("name", PATTERNS)
def test_compiled_encode_matches_the_reference_on_many_languages(name):
    compiled, reference = twins(PATTERNS[name])
    text = multilingual_text(20_000 if name != "none" else 1000, seed=1)  # one piece: the reference is quadratic
    assert compiled.encode_ordinary(text) == reference.encode_ordinary(text)


@pytest.mark.parametrize("compiled", [True, False])
def test_both_paths_refuse_unknown_ids_and_lone_surrogates_alike(compiled):
    tok = BPETokenizer(GPT4_SPLIT_PATTERN, compiled=compiled).train(CORPUS, 300)
    for bad in ([-1], [300], [1, 2.5], ["7"]):
        with pytest.raises(ValueError, match="unknown token id"):
            tok.decode(bad)
    with pytest.raises(ValueError, match=r"U\+D800 at index 1"):
        tok.encode("a\ud800")


def test_nanograd_kernels_numpy_selects_the_reference(monkeypatch):
    monkeypatch.setenv("NANOGRAD_KERNELS", "numpy")
    assert BPETokenizer().compiled is False
    assert BPETokenizer(compiled=True).compiled is True
    monkeypatch.delenv("NANOGRAD_KERNELS")
    assert BPETokenizer().compiled is True


def test_the_piece_cache_empties_when_full_and_ids_stay_right():
    compiled, reference = twins.__wrapped__(GPT4_SPLIT_PATTERN)
    compiled.encode_ordinary("warm up")  # builds the compiled encoder
    compiled._encoder.cache = PieceCache(pieces=32, key_bytes=200, ids=100)
    text = multilingual_text(5000, seed=2)
    assert compiled.encode_ordinary(text) == reference.encode_ordinary(text)
    assert 0 < len(compiled._encoder.cache) <= 32
    assert compiled.encode_ordinary(text) == reference.encode_ordinary(text)  # again, from a part-full cache
    compiled.clear_cache()
    assert len(compiled._encoder.cache) == 0


def test_pieces_longer_than_the_cache_are_encoded_but_not_kept():
    compiled, reference = twins.__wrapped__(GPT4_SPLIT_PATTERN)
    compiled.encode_ordinary("warm up")
    compiled._encoder.cache = PieceCache(pieces=32, key_bytes=16, ids=100)
    text = "abcdefghijklmnopqrstuvwxyz " * 3
    assert compiled.encode_ordinary(text) == reference.encode_ordinary(text)
    assert len(compiled._encoder.cache) == 0


@pytest.mark.parametrize("compiled", [True, False])
def test_a_piece_that_is_a_token_is_that_token_even_after_a_duplicate(compiled):
    # 256 "bc", 257 "ab", 258 "ab" again, 259 "cd", 260 "abcd". Merging "abcd" gets stuck at a|bc|d ("abc"
    # and "bcd" are no tokens), so only the whole-piece lookup finds 260, the last id, which comes after a
    # duplicate: counting distinct tokens instead of ids once left it out of the compiled lookup (planted).
    tok = BPETokenizer._from_parts(None, list(range(256)), [(98, 99), (97, 98), (97, 98), (99, 100), (257, 259)], {})
    tok.compiled = compiled
    assert tok.encode("abcd") == [260]
    assert tok.encode("abcdx") == [97, 256, 100, 120]
