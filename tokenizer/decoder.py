"""Decoding's inner loop: copy each token's bytes into one output buffer.

`b"".join` over a list lookup pays for one Python object per token. Here each id reads one 8-byte word:
a token of up to 7 bytes (most of them) lives in its word's low bytes with its length in the top byte, so
the loop copies the word's 8 bytes (a fixed-length copy the compiler unrolls, no branch on the length) and
advances by the true length, the next token overwriting the spare bytes; a longer token's word holds where
its bytes are in a flat table. One word per id keeps the table at 8 bytes a token (0.8 MB for cl100k's 100k
tokens), so the random reads that decoding makes mostly hit the cache. The same pass checks the ids; what is
left of decode's time is turning the list of ids into an array.
"""

import numpy as np
from numba import njit

COPY = 8  # bytes copied per short token; the table and the output carry this much slack
SHORT = 7  # a token of at most this many bytes lives in its word, beside its length
_LONG, _NONE = 255, 254  # the top byte of a longer token's word, and of an id with no token


class TokenTable:
    """All token bytes in one flat uint8 array: token i is flat[offsets[i] : offsets[i] + lengths[i]];
    and `words` (one uint64 per id, as described above) for decoding.

    `tokens[i]` is None for an id that has no token (a gap between special-token ids).
    """

    def __init__(self, tokens: list[bytes | None]):
        self.known = np.array([token is not None for token in tokens], dtype=bool)
        self.lengths = np.array([len(token or b"") for token in tokens], dtype=np.int64)
        self.offsets = np.zeros(len(tokens), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=self.offsets[1:])
        flat = b"".join(token or b"" for token in tokens) + bytes(COPY)
        self.flat = np.frombuffer(flat, dtype=np.uint8)

        first8 = self.flat[self.offsets[:, None] + np.arange(COPY)]  # (n, 8): each token's first bytes
        first8[np.arange(COPY) >= self.lengths[:, None]] = 0  # and no byte of the next token
        inline = first8.copy().view("<u8")[:, 0] | (self.lengths.astype(np.uint64) << np.uint64(56))
        long = self.offsets.astype(np.uint64) | np.uint64(_LONG << 56)
        self.words = np.where(~self.known, np.uint64(_NONE << 56), np.where(self.lengths <= SHORT, inline, long))

    def gather(self, ids: np.ndarray) -> bytes | None:
        """The concatenated bytes of `ids` (int64), or None if one of them names no token."""
        out, total = _gather(ids, self.words, self.lengths, self.flat)
        return None if total < 0 else out[:total].tobytes()


@njit(cache=True)
def _gather(ids, words, lengths, flat):
    """(buffer, bytes written), or (empty, -1) on an unknown id. One pass checks and copies; the buffer
    starts at 4 bytes per id (most tokens are shorter) and doubles when it runs short."""
    out = np.empty(4 * len(ids) + 2 * COPY, dtype=np.uint8)
    position = 0
    for token_id in ids:
        if token_id < 0 or token_id >= len(words):
            return out[:0], -1
        word = words[token_id]
        tag = word >> np.uint64(56)  # the length of a short token, or _LONG, or _NONE
        length = np.int64(tag) if tag <= SHORT else lengths[token_id]
        if tag == _NONE:
            return out[:0], -1
        if position + max(length, COPY) > len(out):
            grown = np.empty(2 * len(out) + length, dtype=np.uint8)
            grown[:position] = out[:position]
            out = grown
        if tag <= SHORT:
            for k in range(COPY):
                out[position + k] = np.uint8((word >> np.uint64(8 * k)) & np.uint64(255))
        else:
            start = np.int64(word & np.uint64((1 << 56) - 1))
            for k in range(length):
                out[position + k] = flat[start + k]
        position += length
    return out, position
