"""Encoding's inner loop in numba: apply ranked merges to a batch of chunks.

The rule (tiktoken's): in each chunk, merge the adjacent pair of parts whose concatenation is the
token of lowest rank, leftmost on ties, until no adjacent pair forms a token.

Pairs are looked up in `PairTable`, an open-addressing hash table in two NumPy arrays, because
numba's typed dict is slow to fill from Python. Each chunk runs in O(n log n): a heap of candidate
merges over a linked list of parts, so a 100,000-byte run of one character stays fast.
"""

import heapq

import numpy as np
from numba import njit

EMPTY = -1  # key of an unused slot in the pair table


@njit(cache=True)
def _slot(left, right, mask):
    mixed = left * 2654435761 + right  # ids < 2**31, so this fits in int64
    return (mixed ^ (mixed >> 17)) & mask


@njit(cache=True)
def _insert_all(keys, values, lefts, rights, ranks):
    mask = len(keys) - 1
    for k in range(len(lefts)):
        key = (lefts[k] << 32) | rights[k]
        slot = _slot(lefts[k], rights[k], mask)
        while keys[slot] != EMPTY and keys[slot] != key:
            slot = (slot + 1) & mask
        keys[slot] = key
        values[slot] = ranks[k]


@njit(cache=True)
def _lookup(keys, values, left, right):
    """The rank of the token spelled by (left, right), or -1 if they form no token."""
    mask = len(keys) - 1
    key = (left << 32) | right
    slot = _slot(left, right, mask)
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
        _insert_all(self.keys, self.values, as_array(lefts), as_array(rights), as_array(ranks))

    def merge_chunks(self, byte_ids: np.ndarray, starts: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Encode chunk c = byte_ids[starts[c]:starts[c + 1]] for every c.

        byte_ids: (total,) uint8, each byte already mapped to its token id. starts: (n_chunks + 1,)
        int64. Returns all chunks' ids in one list and (n_chunks + 1,) offsets into it.
        """
        out = np.empty(len(byte_ids), dtype=np.int64)
        out_starts = np.empty(len(starts), dtype=np.int64)
        _merge_chunks(byte_ids, starts, self.keys, self.values, out, out_starts)
        return out[: out_starts[-1]].tolist(), out_starts


@njit(cache=True)
def _merge_chunks(byte_ids, starts, keys, values, out, out_starts):
    total = len(byte_ids)
    ids = np.empty(total, dtype=np.int64)  # ids[i]: token of the part starting at byte i; -1 once absorbed
    next_part = np.empty(total, dtype=np.int64)
    prev_part = np.empty(total, dtype=np.int64)
    written = 0
    for c in range(len(starts) - 1):
        lo, hi = starts[c], starts[c + 1]
        heap = [(np.int64(0), np.int64(0)) for _ in range(0)]  # (rank, part): an empty typed list
        for i in range(lo, hi):
            ids[i] = byte_ids[i]
            next_part[i] = i + 1
            prev_part[i] = i - 1
        for i in range(lo, hi - 1):
            rank = _lookup(keys, values, ids[i], ids[i + 1])
            if rank >= 0:
                heap.append((rank, i))
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = next_part[i]
            if ids[i] < 0 or j >= hi or _lookup(keys, values, ids[i], ids[j]) != rank:
                continue  # stale: part i or its neighbour changed since this entry was pushed
            ids[i] = rank
            ids[j] = -1
            after = next_part[j]
            next_part[i] = after
            if after < hi:
                prev_part[after] = i
                rank_right = _lookup(keys, values, rank, ids[after])
                if rank_right >= 0:
                    heapq.heappush(heap, (rank_right, i))
            before = prev_part[i]
            if before >= lo:
                rank_left = _lookup(keys, values, ids[before], rank)
                if rank_left >= 0:
                    heapq.heappush(heap, (rank_left, before))
        out_starts[c] = written
        for i in range(lo, hi):
            if ids[i] >= 0:
                out[written] = ids[i]
                written += 1
    out_starts[len(starts) - 1] = written
