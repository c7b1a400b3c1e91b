"""Token data for training: tokenize a corpus once, keep the ids in a memory-mapped file, split 90/10 into
train and val, and draw random (B, T) batches from them.

Everything derived from a corpus (tokenizers, token ids) is cached under `corpus.cache_dir()`, keyed by a
digest of the text, of the tokenizer and of TOKENIZE_FORMAT_VERSION, so a second run starts at once, a changed
file is re-tokenized, and a change to the code that trains or applies tokenizers is not hidden by old files.
"""
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tokenizer
from gpt.train import corpus
from gpt.storage.atomic import write_atomic

TOKENIZER_KINDS = ("char", "bpe")
VAL_FRACTION = 0.1
# Part of the key of every cached tokenizer and id file. Bump it when a change to tokenizer/ would train a
# different tokenizer from the same text, or encode the same text to different ids.
TOKENIZE_FORMAT_VERSION = 1


def _cache_key(text):
    """The digest naming what is cached for `text`: the text and the format version."""
    return corpus.text_digest(f"version {TOKENIZE_FORMAT_VERSION}\n{text}")


def check_tokenizer(kind, vocab_size=None):
    """Raise ValueError unless a tokenizer of `kind` with `vocab_size` tokens can be built."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
    if kind == "bpe" and (vocab_size is None or vocab_size <= 256):
        raise ValueError(f"a bpe tokenizer needs vocab_size > 256 (its byte alphabet), got {vocab_size}")


def build_tokenizer(kind, text, vocab_size=None, cache=None, progress=None):
    """Train (or fetch from the cache) a tokenizer for `text`; returns (tokenizer, path of its .model file).
    progress=False (a --no-progress flag) trains a BPE tokenizer without showing its merges.

    "char": the vocabulary is the set of characters in the text (nanoGPT's shakespeare_char).
    "bpe": byte-level BPE with the GPT-4 split pattern and `vocab_size` tokens.
    """
    check_tokenizer(kind, vocab_size)
    name = "char" if kind == "char" else f"bpe{vocab_size}"
    prefix = corpus.cache_dir(cache) / f"{name}-{_cache_key(text)}"
    model_path = prefix.with_name(prefix.name + ".model")
    if model_path.exists():
        return tokenizer.load(model_path), model_path
    if kind == "char":
        tok = tokenizer.CharTokenizer().train(text)
    else:
        print(f"training a BPE tokenizer with {vocab_size} tokens (cached in {model_path})")
        tok = tokenizer.BPETokenizer(pattern=tokenizer.GPT4_SPLIT_PATTERN)
        tok.train(text, vocab_size=vocab_size, verbose=progress is not False)
    return tok, tok.save(prefix)  # save writes atomically


def token_ids(text, tok, tokenizer_path, cache=None):
    """The ids of `text`, memory-mapped from a cached .npy file (uint16 when the vocabulary fits, else uint32)."""
    tokenizer_digest = hashlib.sha256(Path(tokenizer_path).read_bytes()).hexdigest()[:16]
    path = corpus.cache_dir(cache) / f"tokens-{_cache_key(text)}-{tokenizer_digest}.npy"
    if not path.exists():
        ids = np.asarray(tok.encode(text), dtype=np.int64)
        dtype = np.uint16 if ids.size == 0 or ids.max() < 2**16 else np.uint32
        buffer = io.BytesIO()
        np.save(buffer, ids.astype(dtype))
        write_atomic(path, buffer.getvalue())
    return np.load(path, mmap_mode="r")


def split_train_val(ids, val_fraction=VAL_FRACTION):
    """The first 90% of the ids for training, the last 10% for validation (as nanoGPT splits)."""
    n_train = int(len(ids) * (1.0 - val_fraction))
    return ids[:n_train], ids[n_train:]


def get_batch(ids, batch_size, block_size, rng):
    """A random batch of `batch_size` windows from `ids`: inputs x and targets y (x shifted by one),
    both int64 (batch_size, block_size). `rng` is an np.random.Generator, so batches are reproducible."""
    if len(ids) <= block_size:
        raise ValueError(
            f"the data has {len(ids)} tokens, too few for block_size {block_size}; "
            "use more text or a smaller --block-size"
        )
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)
    x = np.stack([ids[s : s + block_size] for s in starts]).astype(np.int64)
    y = np.stack([ids[s + 1 : s + 1 + block_size] for s in starts]).astype(np.int64)
    return x, y


@dataclass
class TokenData:
    """A tokenized corpus ready for training."""

    train: np.ndarray  # memory-mapped ids, (N_train,)
    val: np.ndarray  # memory-mapped ids, (N_val,)
    tokenizer: object  # a tokenizer.Tokenizer (CharTokenizer or BPETokenizer)
    tokenizer_path: Path  # the .model file; a checkpoint keeps a copy of it
    text_digest: str  # of the corpus text: a resumed run checks it trains on the same text


def prepare(data="shakespeare", tokenizer_kind="char", vocab_size=None, cache=None, tokenizer_path=None, text=None,
            progress=None):
    """Load the corpus named by `data` (see `corpus.load_text`; or take its `text`, if already loaded) and
    tokenize it.

    With `tokenizer_path` (resuming from a checkpoint) that tokenizer is used as is; otherwise one of
    `tokenizer_kind` is built for the text (`progress` as in build_tokenizer). Returns a TokenData.
    """
    text = corpus.load_text(data, cache) if text is None else text
    if tokenizer_path is not None:
        tok = tokenizer.load(tokenizer_path)
    else:
        tok, tokenizer_path = build_tokenizer(tokenizer_kind, text, vocab_size, cache, progress)
    train, val = split_train_val(token_ids(text, tok, tokenizer_path, cache))
    return TokenData(train, val, tok, Path(tokenizer_path), corpus.text_digest(text))
