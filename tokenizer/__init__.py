"""Byte-level BPE and character tokenizers.

    from tokenizer import BPETokenizer, CharTokenizer, GPT4_SPLIT_PATTERN, load

    tok = BPETokenizer(pattern=GPT4_SPLIT_PATTERN).train(text, vocab_size=1024)
    ids = tok.encode(text)                # list[int]; tok.decode(ids) == text
    tok.save("out/shakespeare")           # out/shakespeare.model (+ .vocab for humans)
    tok = load("out/shakespeare.model")   # any kind: the file header says which

Both tokenizers share `vocab_size`, `encode`, `decode`, `save` and `load` (see base.Tokenizer).

Reading order (docs/tokenizer.md's too):
1. patterns.py: the split patterns, which cut text into pieces before BPE runs;
2. reference.py: BPE in plain Python, the reading path: split, merge a piece, decode, train;
3. bpe.py: `BPETokenizer`, the API: training, encoding with special tokens, decoding, files;
4. base.py (the `.model` file), char.py (`CharTokenizer`), interop.py (tiktoken's and GPT-2's files),
   progress.py (progress shown to suit a terminal or a log, for every program of the project);
5. the compiled path, numba drop-ins for reference.py, tested equal to it (skip on a first read):
   unicode_classes.py (the code-point class table from `regex`'s tables) -> pretokenizer.py (the GPT-2 and
   GPT-4 patterns as a scanner) -> lookup_tables.py (hash tables in arrays) -> encoder.py (whole-token
   lookup, the piece cache, the merge) -> decoder.py -> trainer.py.

The switch: the compiled path runs by default; `NANOGRAD_KERNELS=numpy` (read when a BPETokenizer is made,
as the engine reads it) or `BPETokenizer(..., compiled=False)` (or setting `tok.compiled = False`) runs the
reference instead, for reading and debugging. Both give the same ids, bytes and merges.
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
