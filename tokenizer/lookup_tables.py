"""Open-addressing hash tables in NumPy arrays, for the compiled encoder (numba's typed dict is slow to fill
from Python): `TokenLookup` (bytes -> token id) and `PairTable` ((left id, right id) -> rank of the token the
pair spells), and `find` / `insert` for byte-string keys, which the piece cache uses too. A slot holds a short
key's bytes themselves, so most lookups read one cache line and no key bytes elsewhere (a memory-bound step:
cl100k's table is 4 MB). Each table is at most half full, so probe chains stay short.
"""

import numpy as np
from numba import njit

EMPTY = -1  # an unused slot
INLINE = 8  # keys of up to 8 bytes are kept in the slot itself: a lookup touches one cache line
VALUE = (1 << 32) - 1


@njit(cache=True)
def key_of(data, lo, hi):
    """(word, hash) of the key data[lo:hi]: a key of up to 8 bytes is its own word (the bytes, packed), so
    comparing words compares keys; a longer one's word is its 64-bit FNV-1a hash."""
    if hi - lo <= INLINE:
        word = np.uint64(0)
        for k in range(lo, hi):
            word = (word << np.uint64(8)) | np.uint64(data[k])
        mixed = (word ^ np.uint64(hi - lo)) * np.uint64(0x9E3779B97F4A7C15)
        return np.int64(word), np.int64(mixed ^ (mixed >> np.uint64(29)))
    h = np.uint64(14695981039346656037)
    for k in range(lo, hi):
        h = (h ^ np.uint64(data[k])) * np.uint64(1099511628211)
    return np.int64(h), np.int64(h)


@njit(cache=True)
def same_bytes(a, a_lo, b, b_lo, length):
    for k in range(length):
        if a[a_lo + k] != b[b_lo + k]:
            return False
    return True


@njit(cache=True)
def find(slots, data, lo, hi, word, h, stored):
    """The value stored for key data[lo:hi] (whose key_of is word, h), or -1. `stored` holds the bytes of
    keys longer than INLINE, at the offsets in the slots' third column."""
    mask = len(slots) - 1
    length = hi - lo
    slot = h & mask
    while slots[slot, 1] != EMPTY:
        if slots[slot, 0] == word and slots[slot, 1] >> 32 == length and (
                length <= INLINE or same_bytes(stored, slots[slot, 2], data, lo, length)):
            return slots[slot, 1] & VALUE
        slot = (slot + 1) & mask
    return -1


@njit(cache=True)
def insert(slots, word, h, length, value, stored_at):
    """Store `value` (0 <= value < 2**32) for a key not in the table; its bytes are at stored[stored_at:]."""
    mask = len(slots) - 1
    slot = h & mask
    while slots[slot, 1] != EMPTY:
        slot = (slot + 1) & mask
    slots[slot, 0], slots[slot, 1], slots[slot, 2] = word, (np.int64(length) << 32) | value, stored_at


def empty_slots(n_keys: int) -> np.ndarray:
    """(size, 3) int64 slots for up to n_keys keys, at most half full: word, length << 32 | value, stored_at."""
    size = 16
    while size < 2 * n_keys:
        size *= 2
    slots = np.zeros((size, 3), dtype=np.int64)
    slots[:, 1] = EMPTY
    return slots


@njit(cache=True)
def _fill_token_slots(slots, flat, offsets, lengths):
    for token_id in range(len(lengths)):  # in id order: of two tokens with the same bytes, the lower id wins
        lo, hi = offsets[token_id], offsets[token_id] + lengths[token_id]
        word, h = key_of(flat, lo, hi)
        if find(slots, flat, lo, hi, word, h, flat) < 0:
            insert(slots, word, h, hi - lo, token_id, lo)


class TokenLookup:
    """bytes -> lowest id of the token spelled so, for the ordinary tokens of a decoder table:
    find(lookup.slots, data, lo, hi, *key_of(data, lo, hi), lookup.flat)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        self.flat = flat
        self.slots = empty_slots(len(lengths))
        _fill_token_slots(self.slots, flat, offsets, lengths)


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
