"""The compiled pre-tokenizer cuts text exactly as `regex.findall` does with GPT-2's and GPT-4's split patterns:
on generated Unicode text (every plane, combining marks, mixed scripts, long white-space runs, contractions
in every case, digits of many scripts), and on every code point this `regex` knows, each in the contexts
the patterns care about (after a space, a quote, a letter, a digit, a line break).
"""
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from tokenizer.pretokenizer import GPT2, GPT4, split

KINDS = {"gpt2": (GPT2, GPT2_SPLIT_PATTERN), "gpt4": (GPT4, GPT4_SPLIT_PATTERN)}
SPACES = [chr(c) for c in range(0x110000) if 0xD800 > c or c > 0xDFFF if regex.fullmatch(r"\s", chr(c))]
NEAR_SPACES = ["\x1c", "\x1d", "\x1e", "\x1f", "\u200b", "\u200d", "\ufeff", "\u180e"]  # not \s in regex
LETTERS_AND_NUMBERS = list("aZéßЖλ中ㄱ가ﬁǅʰ٣½Ⅻ０𝟘") + ["\U00010348", "\U0001e030", "\U0002ebf0", "\u1c89"]
MARKS = ["\u0301", "\u20dd", "\u0e31", "\u094d", "\U0001f3fd", "\u200d"]
CONTRACTION_LETTERS = list("sdmtlvreSDMTLVRE") + ["\u017f", "\u212a", "\u0130"]  # long s; Kelvin; dotted I
PUNCTUATION = list("'\"’.,;:!?-()[]{}#$%&*+/<=>@\\^_`|~") + ["\u00a7", "😀", "\U0001f1fa", "\U000e0001", "\U0010fffd", "\x00"]

chars = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
    st.sampled_from(SPACES + NEAR_SPACES + LETTERS_AND_NUMBERS + MARKS + CONTRACTION_LETTERS + PUNCTUATION),
)
runs = st.builds(lambda ch, n: ch * n, st.sampled_from([" ", "\n", "\r\n", "\t", "\u3000", " \n", "7", "a", "'"]),
                 st.integers(1, 40))
contractions = st.builds(lambda quote, letters: quote + letters, st.sampled_from(["'", " '", "\n'"]),
                         st.sampled_from(["s", "S", "d", "M", "t", "ll", "LL", "lL", "ve", "VE", "Re", "rE",
                                          "\u017f", "l", "v", "r", "x"]))
texts = st.lists(st.one_of(st.text(chars, max_size=12), runs, contractions), max_size=16).map("".join)


@pytest.mark.parametrize("name", KINDS)
@settings(max_examples=150)
@given(text=texts)
def test_scanner_cuts_generated_text_as_regex_does(name, text):
    kind, pattern = KINDS[name]
    assert split(text, kind) == regex.findall(pattern, text)


# Around each code point, in turn: what comes before and after it. The patterns look one character back
# (a space or a quote before letters) and up to two ahead (a contraction's letters, \s+(?!\S)).
CONTEXTS = [("", ""), (" ", ""), ("'", ""), ("", "'s"), ("a", "1"), ("\r\n", " "), ("1", "  x"), ("'", "'")]


def every_code_point() -> str:
    """Every code point but the surrogates, each in the next of CONTEXTS, 64 to a line."""
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    framed = [CONTEXTS[k % len(CONTEXTS)][0] + ch + CONTEXTS[k % len(CONTEXTS)][1] for k, ch in enumerate(points)]
    return "\n".join("".join(framed[k : k + 64]) for k in range(0, len(framed), 64))


@pytest.mark.parametrize("name", KINDS)
def test_scanner_cuts_every_code_point_as_regex_does(name):
    kind, pattern = KINDS[name]
    text = every_code_point()
    assert split(text, kind) == regex.findall(pattern, text)


@pytest.mark.parametrize("name", KINDS)
def test_scanner_agrees_on_the_patterns_hard_cases(name):
    kind, pattern = KINDS[name]
    hard = ["I'll don't 'S 'LL 'Ve \u017f '\u017f 'x ''s", "a  b\n\n  c \r\n x   ", "12345 \u0663\u0664\u0665\u0666 x1y",
            " \t\t\u00a0x", "?'s .hello\n\n", "\u0301abc e\u0301", "  \n  \n  ", "x \u3000\u3000y", " 😀😀\n\r", "   "]
    for text in hard:
        assert split(text, kind) == regex.findall(pattern, text), text
