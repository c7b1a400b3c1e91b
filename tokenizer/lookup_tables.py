"""Open-addressing hash tables in NumPy arrays, for the compiled encoder (numba's typed dict is slow to fill
from Python): `TokenLookup` (bytes -> token id) and `PairTable` ((left id, right id) -> rank of the token the
pair spells). Byte strings are hashed with 64-bit FNV-1a; each table is at most half full, so probe chains
stay short.
"""

import numpy as np
from numba import njit

EMPTY = -1  # an unused slot


@njit(cache=True)
def fnv1a(data, lo, hi):
    h = np.uint64(14695981039346656037)
    for k in range(lo, hi):
        h = (h ^ np.uint64(data[k])) * np.uint64(1099511628211)
    return h


@njit(cache=True)
def same_bytes(a, a_lo, b, b_lo, length):
    for k in range(length):
        if a[a_lo + k] != b[b_lo + k]:
            return False
    return True


@njit(cache=True)
def _fill_token_slots(slots, hashes, flat, offsets, lengths):
    mask = len(slots) - 1
    for token_id in range(len(lengths)):  # in id order: of two tokens with the same bytes, the lower id wins
        h = fnv1a(flat, offsets[token_id], offsets[token_id] + lengths[token_id])
        hashes[token_id] = h
        slot = np.int64(h & np.uint64(mask))
        while slots[slot] != EMPTY:
            other = slots[slot]
            if hashes[other] == h and lengths[other] == lengths[token_id] and same_bytes(
                    flat, offsets[other], flat, offsets[token_id], lengths[token_id]):
                break
            slot = (slot + 1) & mask
        if slots[slot] == EMPTY:
            slots[slot] = token_id


class TokenLookup:
    """bytes -> lowest id of the token spelled so, for the ordinary tokens of a decoder table."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        size = 16
        while size < 2 * len(lengths):
            size *= 2
        self.flat, self.offsets, self.lengths = flat, offsets, lengths
        self.slots = np.full(size, EMPTY, dtype=np.int64)
        self.hashes = np.zeros(len(lengths), dtype=np.uint64)
        _fill_token_slots(self.slots, self.hashes, flat, offsets, lengths)


@njit(cache=True)
def whole_token(data, lo, hi, h, slots, hashes, flat, offsets, lengths):
    mask = len(slots) - 1
    slot = np.int64(h & np.uint64(mask))
    while slots[slot] != EMPTY:
        token_id = slots[slot]
        if hashes[token_id] == h and lengths[token_id] == hi - lo and same_bytes(flat, offsets[token_id], data, lo, hi - lo):
            return token_id
        slot = (slot + 1) & mask
    return -1


@njit(cache=True)
def _pair_slot(left, right, mask):
    mixed = left * 2654435761 + right  # ids < 2**31, so this fits in int64
    return (mixed ^ (mixed >> 17)) & mask


@njit(cache=True)
def _fill_pair_slots(keys, values, lefts, rights, ranks):
    mask = len(keys) - 1
    for k in range(len(lefts)):
        key = (lefts[k] << 32) | rights[k]
        slot = _pair_slot(lefts[k], rights[k], mask)
        while keys[slot] != EMPTY and keys[slot] != key:
            slot = (slot + 1) & mask
        keys[slot] = key
        values[slot] = ranks[k]


@njit(cache=True)
def pair_rank(keys, values, left, right):
    """The rank of the token spelled by (left, right), or -1 if they spell no token."""
    mask = len(keys) - 1
    key = (left << 32) | right
    slot = _pair_slot(left, right, mask)
    while keys[slot] != EMPTY:
        if keys[slot] == key:
            return values[slot]
        slot = (slot + 1) & mask
    return -1


class PairTable:
    """(left id, right id) -> rank of the token they spell, for every such pair in a vocabulary."""

    def __init__(self, lefts: list[int], rights: list[int], ranks: list[int]):
        size = 16
        while size < 2 * len(lefts):  # at most half full: probe chains stay short
            size *= 2
        self.keys = np.full(size, EMPTY, dtype=np.int64)
        self.values = np.zeros(size, dtype=np.int64)
        as_array = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
        _fill_pair_slots(self.keys, self.values, as_array(lefts), as_array(rights), as_array(ranks))
