"""CharTokenizer: vocabulary from the text, clear errors, the shared save/load surface."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_tokenizer_bpe import texts

import tokenizer
from tokenizer import CharTokenizer, ModelFileError


def test_vocabulary_is_the_sorted_characters():
    tok = CharTokenizer().train("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 8
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode([7, 5, 6, 4, 1]) == "world"


@given(text=texts)
def test_round_trip_on_its_own_text(text):
    tok = CharTokenizer().train(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


@given(text=texts, unseen=st.characters(exclude_categories=["Cs"]))
def test_unseen_character_is_named(text, unseen):
    assume(unseen not in text)
    tok = CharTokenizer().train(text)
    with pytest.raises(ValueError, match=f"U\\+{ord(unseen):04X}\\) at index {len(text)} is not in the vocabulary"):
        tok.encode(text + unseen)


@pytest.mark.parametrize("bad", [[-1], [3], [0.5], ["a"]])
def test_unknown_id_raises(bad):
    with pytest.raises(ValueError, match="unknown token id"):
        CharTokenizer().train("abc").decode(bad)


def test_lone_surrogate_is_rejected():
    with pytest.raises(ValueError, match=r"U\+D83D at index 1"):
        CharTokenizer().train("a\ud83d")


def test_save_load(tmp_path):
    tok = CharTokenizer().train("To be, or not to be:\n\"that\" is the question 😀\t")
    path = tok.save(tmp_path / "char")
    loaded = tokenizer.load(path)
    assert loaded.chars == tok.chars and isinstance(loaded, CharTokenizer)
    assert CharTokenizer.load(path).encode("to be") == tok.encode("to be")
    assert (tmp_path / "char.vocab").read_text(encoding="utf-8").splitlines()[0] == "[\\u0009] 0"


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[:4], "file ends after line 4, expected a character"),
    (lambda lines: lines[:3] + ['"ab"'] + lines[4:], "line 4: expected exactly one character"),
    (lambda lines: lines[:3] + [lines[4]] + lines[3:], "line 5: characters must be sorted and distinct"),
    (lambda lines: lines[:3] + ["b"] + lines[4:], "line 4: character should be a JSON string"),
])
def test_corrupt_char_model_is_rejected(tmp_path, edit, message):
    path = CharTokenizer().train("abc").save(tmp_path / "char")
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    with pytest.raises(ModelFileError, match=message):
        tokenizer.load(path)
