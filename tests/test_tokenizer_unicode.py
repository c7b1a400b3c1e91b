"""Tokenizer edge cases of Unicode, stated: any string of code points round-trips through byte-level BPE and
through a character tokenizer trained on it; a lone surrogate (which UTF-8 cannot encode) is refused naming
its position; lone combining marks and code points newer than Python's own Unicode tables round-trip.

Where ids can differ from tiktoken's: the split pattern's classes (\\p{L}, \\p{N}) are looked up in the
`regex` package's Unicode tables, tiktoken's in its Rust engine's. A code point one table knows and the
other does not (assigned in a newer Unicode version) can fall into a different chunk, so the two can cut the
text differently around it; everywhere else the ids are equal (test_tokenizer_bpe.py's tiktoken test).
"""
import functools

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, CharTokenizer

PATTERNS = [GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN, None]
# Every code point but the surrogates: all planes, unassigned ones, private use, noncharacters, NUL, BOM.
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=40)
# Assigned in Unicode 15.0, 15.1, 16.0: unassigned (Cn) in Python 3.11's unicodedata (14.0); `regex` knows them.
NEWEST = {"U+1E030 modifier letter Cyrillic small a (15.0)": "\U0001e030",
          "U+11F00 Kawi sign candrabindu, a mark (15.0)": "\U00011f00",
          "U+2EBF0 CJK ideograph extension I (15.1)": "\U0002ebf0",
          "U+1C89 Cyrillic capital letter tje (16.0)": "\u1c89",
          "U+10D50 Garay capital letter a (16.0)": "\U00010d50"}
COMBINING = ["\u0301", "\u0301abc", "a\u0301", " \u0301", "\n\u0301", "1\u0301", "\u0301" * 50, "'\u0301s",
             "\u20dd", "\U0001f44d\U0001f3fd\u0301", "\u0e31", "\u094d\u0915"]


@functools.lru_cache(maxsize=None)
def trained(pattern):
    text = "The cat sat; the dog ran. Ünïcödé ñ 漢字 😀 \u0301 123 456\n" * 30
    return BPETokenizer(pattern=pattern).train(text, vocab_size=320)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["gpt4", "gpt2", "none"])
@given(text=any_text)
def test_any_code_point_round_trips_through_bpe(pattern, text):
    tok = trained(pattern)
    assert tok.decode(tok.encode(text)) == text


@given(text=any_text)
def test_any_code_point_round_trips_through_a_char_tokenizer_trained_on_it(text):
    tok = CharTokenizer().train(text)
    assert tok.decode(tok.encode(text)) == text


@given(text=any_text, data=st.data())
def test_a_lone_surrogate_is_refused_naming_where_it_is(text, data):
    at = data.draw(st.integers(0, len(text)))
    surrogate = chr(data.draw(st.integers(0xD800, 0xDFFF)))
    bad = text[:at] + surrogate + text[at:]
    where = rf"U\+{ord(surrogate):04X} at index {at}"
    for encode in (trained(GPT4_SPLIT_PATTERN).encode, trained(None).encode_ordinary, CharTokenizer().train):
        with pytest.raises(ValueError, match=where):
            encode(bad)


@pytest.mark.parametrize("text", COMBINING)
@pytest.mark.parametrize("pattern", PATTERNS, ids=["gpt4", "gpt2", "none"])
def test_lone_combining_marks_round_trip(pattern, text):
    tok = trained(pattern)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("name", NEWEST)
def test_code_points_newer_than_pythons_tables_round_trip_and_split_by_regexs(name):
    ch = NEWEST[name]
    text = f" {ch}{ch}x 1{ch}"
    for pattern in PATTERNS:
        tok = trained(pattern)
        assert tok.decode(tok.encode(text)) == text
    # The split follows `regex`'s tables, which know these code points: a letter joins the letters after it.
    category = "M" if "mark" in name else "L"
    assert regex.fullmatch(rf"\p{{{category}}}", ch), f"regex {regex.__version__} does not know {name}"
    if category == "L":
        assert regex.findall(GPT4_SPLIT_PATTERN, text)[0] == f" {ch}{ch}x"
