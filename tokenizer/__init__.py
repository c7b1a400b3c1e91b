"""Byte-level BPE and character tokenizers.

    from tokenizer import BPETokenizer, CharTokenizer, GPT4_SPLIT_PATTERN, load

    tok = BPETokenizer(pattern=GPT4_SPLIT_PATTERN).train(text, vocab_size=1024)
    ids = tok.encode(text)                # list[int]; tok.decode(ids) == text
    tok.save("out/shakespeare")           # out/shakespeare.model (+ .vocab for humans)
    tok = load("out/shakespeare.model")   # any kind: the file header says which

Both tokenizers share `vocab_size`, `encode`, `decode`, `save` and `load` (see base.Tokenizer).
"""

from .base import ModelFileError, Tokenizer
from .bpe import BPETokenizer
from .char import CharTokenizer
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN


def load(path) -> Tokenizer:
    """Open a `.model` file of any tokenizer kind (BPETokenizer or CharTokenizer)."""
    return Tokenizer.load(path)


__all__ = [
    "BPETokenizer", "CharTokenizer", "GPT2_SPLIT_PATTERN", "GPT4_SPLIT_PATTERN",
    "ModelFileError", "Tokenizer", "load",
]
