"""Decoding's inner loop: copy each token's bytes into one output buffer.

`b"".join` over a list lookup pays for one Python object per token. This numba loop over a flat
byte table copies every token of up to 8 bytes as exactly 8 bytes (a fixed-length copy the compiler
unrolls, with no branch on the length) and then advances by the true length, so the next token
overwrites the spare bytes. That beats a loop of `length` iterations, whose trip count varies per
token, and leaves decode bounded by turning the list of ids into an array. The same call checks the ids.
"""

import numpy as np
from numba import njit

COPY = 8  # bytes copied per short token; the table and the output carry this much slack


class TokenTable:
    """All token bytes in one flat uint8 array: token i is flat[offsets[i] : offsets[i] + lengths[i]].

    `tokens[i]` is None for an id that has no token (a gap between special-token ids).
    """

    def __init__(self, tokens: list[bytes | None]):
        self.known = np.array([token is not None for token in tokens], dtype=bool)
        self.lengths = np.array([len(token or b"") for token in tokens], dtype=np.int64)
        self.offsets = np.zeros(len(tokens), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=self.offsets[1:])
        flat = b"".join(token or b"" for token in tokens) + bytes(COPY)
        self.flat = np.frombuffer(flat, dtype=np.uint8)

        # Where each token is, beside how long it is (-1: no token), so one cache line answers both.
        self.spans = np.stack([self.offsets, np.where(self.known, self.lengths, -1)], axis=1)

    def gather(self, ids: np.ndarray) -> bytes | None:
        """The concatenated bytes of `ids` (int64), or None if one of them names no token."""
        out, total = _gather(ids, self.spans, self.flat)
        return None if total < 0 else out[:total].tobytes()


@njit(cache=True)
def _gather(ids, spans, flat):
    """(buffer, bytes written), or (empty, -1) on an unknown id. One pass checks and copies; the buffer
    starts at 4 bytes per id (most tokens are shorter) and doubles when a long token needs more."""
    out = np.empty(4 * len(ids) + 2 * COPY, dtype=np.uint8)
    position = 0
    for token_id in ids:
        if token_id < 0 or token_id >= len(spans) or spans[token_id, 1] < 0:
            return out[:0], -1
        start, length = spans[token_id, 0], spans[token_id, 1]
        if position + max(length, COPY) > len(out):
            grown = np.empty(2 * len(out) + length, dtype=np.uint8)
            grown[:position] = out[:position]
            out = grown
        if length <= COPY:
            for k in range(COPY):
                out[position + k] = flat[start + k]
        else:
            for k in range(length):
                out[position + k] = flat[start + k]
        position += length
    return out, position
