"""The code-point class table the compiled pre-tokenizer reads: one byte per code point, U+0000..U+10FFFF.

The split patterns ask four questions of a character: is it a letter (\\p{L}), a number (\\p{N}), white
space (\\s), and (GPT-4's contractions, case-insensitive) which of s, d, m, t, l, v, e, r it matches. The
answers are taken from the `regex` package itself, by running each class over a string of every code
point, so the scanner and `regex.findall` agree on every code point this `regex` knows, new Unicode
versions included:

    table[ord("a")] & CLASS_MASK == LETTER      table[ord("7")] & CLASS_MASK == NUMBER
    table[ord("S")] >> FOLD_SHIFT == FOLDS.index("s") + 1   (and so does U+017F, the long s)

Built once per process on first use (about 0.1 s), 1.1 MB.
"""

import functools

import numpy as np
import regex

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3  # the low two bits: the classes are disjoint (checked below)
CLASS_MASK = 3
FOLD_SHIFT = 4
FOLDS = "sdmtlvre"  # the letters of the contractions 's 'd 'm 't 'll 've 're
N_CODE_POINTS = 0x110000


@functools.cache
def class_table() -> np.ndarray:
    """(0x110000,) uint8: the class in the low bits, 1 + FOLDS.index(letter) in the high nibble."""
    every = np.arange(N_CODE_POINTS, dtype=np.uint32).tobytes().decode("utf-32-le", errors="surrogatepass")
    table = np.zeros(N_CODE_POINTS, dtype=np.uint8)
    for klass, expression in ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+")):
        for run in regex.finditer(expression, every):
            if table[run.start() : run.end()].any():
                raise RuntimeError(f"regex {regex.__version__}: {expression} overlaps another class at U+{run.start():04X}")
            table[run.start() : run.end()] = klass
    for k, letter in enumerate(FOLDS):
        for match in regex.finditer(f"(?i:{letter})", every):
            table[match.start()] |= (k + 1) << FOLD_SHIFT
    table.flags.writeable = False
    return table
