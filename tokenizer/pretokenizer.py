"""The compiled pre-tokenizer: GPT-2's and GPT-4's split patterns as a numba scanner over UTF-8 bytes.

`regex.findall(pattern, text)` (reference.split) is the definition; this is a drop-in for the two
published patterns, tested equal to it on generated Unicode text and on every code point
(tests/test_tokenizer_pretokenizer.py). Any other pattern keeps `regex`. Why: `regex` splits
tinyshakespeare at about 10 MB/s, slower than tiktoken encodes it whole, so no merge loop could win.

`piece_end(data, i, n, table, kind)` gives where the piece that starts at byte i ends. It reads the
alternatives of the pattern in order, as the regex engine tries them, and decides each with the class of
a code point (unicode_classes) and at most one look back:

GPT-2  '(?:[sdmt]|ll|ve|re) | ?\\p{L}++| ?\\p{N}++| ?[^\\s\\p{L}\\p{N}]++|\\s++$|\\s+(?!\\S)|\\s
GPT-4  '(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+
       |\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s

The white-space alternatives, read as one decision on the run of white space [i, j) that starts here:
- `\\s++$`: the run reaches the end of the text -> all of it;
- `\\s*[\\r\\n]` (GPT-4): the run holds a line break -> up to and including the last one;
- `\\s+(?!\\S)`: two or more characters -> all but the last (that one goes with the word after it);
- `\\s`: else the single character.
"""

import numpy as np
from numba import njit

from .unicode_classes import CLASS_MASK, FOLD_SHIFT, FOLDS, LETTER, NUMBER, OTHER, SPACE, class_table

GIVEN, GPT2, GPT4 = 0, 1, 2  # GIVEN: the piece ends come from `regex` (any other pattern)
QUOTE, LF, CR, BLANK = ord("'"), ord("\n"), ord("\r"), ord(" ")
S, D, M, T, L, V, E, R = (FOLDS.index(letter) + 1 for letter in "sdmtlver")


@njit(cache=True)
def code_point(data, i):
    """(code point, its length in bytes) of the UTF-8 character at byte i (valid UTF-8 assumed)."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) | ((np.int64(data[i + 2]) & 0x3F) << 6)
            | (np.int64(data[i + 3]) & 0x3F)), 4


@njit(cache=True)
def run_end(data, i, n, table, klass):
    """End of the run of characters of class `klass` that starts at byte i."""
    while i < n:
        cp, length = code_point(data, i)
        if table[cp] & CLASS_MASK != klass:
            break
        i += length
    return i


@njit(cache=True)
def letter_at(data, i, n, table, any_case):
    """(1 + FOLDS.index of the letter at byte i, 0 if it is none of them; its length in bytes).
    Unless any_case, only the lower-case ASCII letters count."""
    if i >= n:
        return 0, 0
    cp, length = code_point(data, i)
    if not any_case and not ord("a") <= cp <= ord("z"):
        return 0, length
    return table[cp] >> FOLD_SHIFT, length


@njit(cache=True)
def contraction_end(data, i, n, table, any_case):
    """End of 's 'd 'm 't 'll 've 're at byte i (the quote), or -1 if there is none."""
    first, length1 = letter_at(data, i + 1, n, table, any_case)
    if first == S or first == D or first == M or first == T:
        return i + 1 + length1
    if first == L or first == V or first == R:
        second, length2 = letter_at(data, i + 1 + length1, n, table, any_case)
        if (first == L and second == L) or (first != L and second == E):
            return i + 1 + length1 + length2
    return -1


@njit(cache=True)
def space_run_end(data, i, first_length, n, table, breaks_first):
    """The white-space alternatives (see the module docstring) for the run starting at byte i."""
    j = run_end(data, i + first_length, n, table, SPACE)
    if j == n:
        return n
    if breaks_first:
        for k in range(j - 1, i - 1, -1):  # line breaks are single bytes, never inside a longer character
            if data[k] == LF or data[k] == CR:
                return k + 1
    last = j - 1
    while data[last] & 0xC0 == 0x80:  # back to the first byte of the run's last character
        last -= 1
    return last if last > i else j


@njit(cache=True)
def gpt2_piece_end(data, i, n, table):
    cp, length = code_point(data, i)
    if cp == QUOTE:
        end = contraction_end(data, i, n, table, False)
        if end >= 0:
            return end
    klass = table[cp] & CLASS_MASK
    if cp == BLANK and i + 1 < n:  # ` ?X++` for X in letters, numbers, others
        cp2, length2 = code_point(data, i + 1)
        klass2 = table[cp2] & CLASS_MASK
        if klass2 != SPACE:
            return run_end(data, i + 1 + length2, n, table, klass2)
    if klass != SPACE:
        return run_end(data, i + length, n, table, klass)
    return space_run_end(data, i, length, n, table, False)


@njit(cache=True)
def gpt4_piece_end(data, i, n, table):
    cp, length = code_point(data, i)
    if cp == QUOTE:
        end = contraction_end(data, i, n, table, True)
        if end >= 0:
            return end
    klass = table[cp] & CLASS_MASK
    if klass == LETTER:  # [^\r\n\p{L}\p{N}]?+\p{L}++ with nothing before the letters
        return run_end(data, i + length, n, table, LETTER)
    if klass != NUMBER and cp != LF and cp != CR and i + length < n:  # ... with one character before them
        cp2, length2 = code_point(data, i + length)
        if table[cp2] & CLASS_MASK == LETTER:
            return run_end(data, i + length + length2, n, table, LETTER)
    if klass == NUMBER:  # \p{N}{1,3}+
        end = i + length
        for _ in range(2):
            if end >= n:
                break
            cp2, length2 = code_point(data, end)
            if table[cp2] & CLASS_MASK != NUMBER:
                break
            end += length2
        return end
    start = -1  # ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    if klass == OTHER:
        start = i
    elif cp == BLANK and i + 1 < n:
        cp2, _ = code_point(data, i + 1)
        if table[cp2] & CLASS_MASK == OTHER:
            start = i + 1
    if start >= 0:
        end = run_end(data, start, n, table, OTHER)
        while end < n and (data[end] == LF or data[end] == CR):
            end += 1
        return end
    return space_run_end(data, i, length, n, table, True)


@njit(cache=True)
def piece_end(data, i, n, table, kind):
    """End (exclusive byte offset) of the piece of pattern `kind` (GPT2 or GPT4) starting at byte i < n."""
    if kind == GPT2:
        return gpt2_piece_end(data, i, n, table)
    return gpt4_piece_end(data, i, n, table)


@njit(cache=True)
def piece_ends(data, table, kind):
    """(n_pieces,) int64: the end of every piece of the UTF-8 bytes `data` (uint8), in order."""
    n = len(data)
    ends = np.empty(n, dtype=np.int64)
    count, i = 0, 0
    while i < n:
        i = piece_end(data, i, n, table, kind)
        ends[count] = i
        count += 1
    return ends[:count]


def split(text: str, kind: int) -> list[str]:
    """reference.split for pattern `kind` (GPT2 or GPT4), by the scanner: the pieces as strings."""
    data = text.encode("utf-8")
    ends = piece_ends(np.frombuffer(data, dtype=np.uint8), class_table(), kind).tolist()
    return [data[start:end].decode("utf-8") for start, end in zip([0] + ends, ends)]
