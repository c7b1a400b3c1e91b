"""The compiled trainer: reference.train_merges in numba, merge for merge the same (tested equal).

The algorithm is the reference's (read it there): distinct pieces with counts, pair counts kept up to
date by each merge, `where` lists of the pieces holding a pair, a heap of (-count, left, right) with lazy
deletion. What changes is the bookkeeping, into arrays a compiled loop can run:
- the pieces' ids live in one flat array; piece w is flat[starts[w] : starts[w] + lengths[w]] and
  shrinks in place as merges join its ids;
- a pair (left, right) is the int64 key left << 32 | right;
- `where` is a linked list of postings per pair (piece, next posting) in two growing arrays; a piece
  may be listed twice for a pair, and is skipped the second time, as the reference skips a stale piece.
"""

import heapq

import numpy as np
from numba import njit, types
from numba.typed import Dict

from .lookup_tables import EMPTY, find, insert, key_of
from .pretokenizer import piece_end
from .unicode_classes import class_table

LOW = (1 << 32) - 1


@njit(cache=True)
def _distinct_pieces(data, table, kind):
    """(first byte of each distinct piece, its end, how often it occurs), in order of first occurrence."""
    n = len(data)
    slots = np.zeros((64, 3), dtype=np.int64)
    slots[:, 1] = EMPTY
    firsts = np.empty(32, dtype=np.int64)  # the distinct pieces: data[firsts[d] : ends[d]]
    ends = np.empty(32, dtype=np.int64)
    counts = np.empty(32, dtype=np.int64)
    n_distinct, lo = 0, 0
    while lo < n:
        hi = piece_end(data, lo, n, table, kind)
        word, h = key_of(data, lo, hi)
        d = find(slots, data, lo, hi, word, h, data)
        if d >= 0:
            counts[d] += 1
        else:
            if n_distinct == len(firsts):  # grow the lists, and the slots to stay at most half full
                firsts, ends, counts = (np.concatenate((firsts, firsts)), np.concatenate((ends, ends)),
                                        np.concatenate((counts, counts)))
                slots = np.zeros((2 * len(firsts), 3), dtype=np.int64)
                slots[:, 1] = EMPTY
                for old in range(n_distinct):
                    old_word, old_h = key_of(data, firsts[old], ends[old])
                    insert(slots, old_word, old_h, ends[old] - firsts[old], old, firsts[old])
            insert(slots, word, h, hi - lo, n_distinct, lo)
            firsts[n_distinct], ends[n_distinct], counts[n_distinct] = lo, hi, 1
            n_distinct += 1
        lo = hi
    return firsts[:n_distinct], ends[:n_distinct], counts[:n_distinct]


def piece_counts(data: bytes, kind: int) -> dict[bytes, int]:
    """Each distinct piece of the UTF-8 bytes `data` -> how often it occurs, cut by the compiled
    pre-tokenizer for pattern `kind` (pretokenizer.GPT2 or GPT4): Counter(reference.split(...)), in bytes."""
    firsts, ends, counts = _distinct_pieces(np.frombuffer(data, dtype=np.uint8), class_table(), kind)
    return {data[first:end]: count for first, end, count in zip(firsts.tolist(), ends.tolist(), counts.tolist())}


@njit(cache=True)
def _post(key, w, heads, posting_piece, posting_next, n_postings):
    """List piece w under pair `key` (unless it heads the list already); return the arrays, maybe grown."""
    head = heads[key] if key in heads else -1
    if head >= 0 and posting_piece[head] == w:
        return posting_piece, posting_next, n_postings
    if n_postings == len(posting_piece):
        posting_piece = np.concatenate((posting_piece, np.empty_like(posting_piece)))
        posting_next = np.concatenate((posting_next, np.empty_like(posting_next)))
    posting_piece[n_postings] = w
    posting_next[n_postings] = head
    heads[key] = n_postings
    return posting_piece, posting_next, n_postings + 1


@njit(cache=True)
def _train(flat, starts, counts, n_merges):
    n_pieces = len(counts)
    lengths = starts[1:] - starts[:-1]
    pair_counts = Dict.empty(key_type=types.int64, value_type=types.int64)
    heads = Dict.empty(key_type=types.int64, value_type=types.int64)  # pair -> its latest posting
    posting_piece = np.empty(max(16, len(flat)), dtype=np.int64)
    posting_next = np.empty(max(16, len(flat)), dtype=np.int64)
    n_postings = 0
    for w in range(n_pieces):
        for k in range(starts[w], starts[w] + lengths[w] - 1):
            key = (flat[k] << 32) | flat[k + 1]
            pair_counts[key] = pair_counts.get(key, 0) + counts[w]
            posting_piece, posting_next, n_postings = _post(key, w, heads, posting_piece, posting_next, n_postings)
    heap = [(-count, key >> 32, key & LOW) for key, count in pair_counts.items()]
    heapq.heapify(heap)

    merges = np.empty((n_merges, 2), dtype=np.int64)
    longest = 1
    for w in range(n_pieces):
        longest = max(longest, lengths[w])
    scratch = np.empty(longest, dtype=np.int64)
    done = 0
    while done < n_merges and len(heap) > 0:
        neg_count, left, right = heapq.heappop(heap)
        key = (left << 32) | right
        if pair_counts.get(key, 0) != -neg_count:
            continue  # stale entry: the count changed after it was pushed
        new_id = 256 + done
        merges[done, 0], merges[done, 1] = left, right
        done += 1
        delta = Dict.empty(key_type=types.int64, value_type=types.int64)
        posting = heads[key]
        del heads[key]  # the pair cannot form again: a merge only ever makes a new id
        while posting >= 0:
            w = posting_piece[posting]
            posting = posting_next[posting]
            lo, m = starts[w], lengths[w]
            scratch[:m] = flat[lo : lo + m]
            out, i = lo, 0
            while i < m:  # replace the pair left to right, without overlap
                if i + 1 < m and scratch[i] == left and scratch[i + 1] == right:
                    flat[out] = new_id
                    i += 2
                else:
                    flat[out] = scratch[i]
                    i += 1
                out += 1
            if out - lo == m:
                continue  # the piece lost this pair to an earlier merge
            lengths[w] = out - lo
            count = counts[w]
            for k in range(m - 1):
                old_key = (scratch[k] << 32) | scratch[k + 1]
                delta[old_key] = delta.get(old_key, 0) - count
            for k in range(lo, out - 1):
                new_key = (flat[k] << 32) | flat[k + 1]
                delta[new_key] = delta.get(new_key, 0) + count
                if flat[k] == new_id or flat[k + 1] == new_id:
                    posting_piece, posting_next, n_postings = _post(new_key, w, heads, posting_piece, posting_next,
                                                                    n_postings)
        for changed, change in delta.items():
            if change != 0:
                count = pair_counts.get(changed, 0) + change
                if count != 0:
                    pair_counts[changed] = count
                    heapq.heappush(heap, (-count, changed >> 32, changed & LOW))
                else:
                    del pair_counts[changed]
    return merges[:done]


def train_merges(chunk_counts: dict[bytes, int], n_merges: int, progress=None) -> list[tuple[int, int]]:
    """reference.train_merges, compiled: the same merges. `progress`, if given, is called once at the end
    with the number of merges made (the compiled loop cannot call back into Python)."""
    pieces = list(chunk_counts)
    flat = np.frombuffer(b"".join(pieces), dtype=np.uint8).astype(np.int64)
    starts = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(piece) for piece in pieces], out=starts[1:])
    counts = np.array(list(chunk_counts.values()), dtype=np.int64)
    merges = _train(flat, starts, counts, n_merges) if n_merges > 0 else np.zeros((0, 2), dtype=np.int64)
    if progress is not None:
        progress(len(merges))
    return [(int(left), int(right)) for left, right in merges.tolist()]
