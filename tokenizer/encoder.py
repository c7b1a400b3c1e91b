"""The compiled encoder: text bytes in, ids out, in one numba call (reference.encode_pieces is the definition).

For each piece the pre-tokenizer cuts (pretokenizer.piece_end, or the ends `regex` found for any other
pattern), in this order:
1. a piece that is itself a token is that token: one lookup in `TokenLookup`, as tiktoken does;
2. a piece seen before is served from the `PieceCache`: natural text repeats its words (tinyshakespeare
   has 298k pieces but 15k distinct ones), so most pieces cost one hash and one comparison;
3. else its bytes are merged by tiktoken's rule, lowest-rank adjacent pair first, leftmost on ties: a
   short piece as tiktoken does it (`merge_short`: scan the pairs' ranks for the lowest, merge, look up
   only the two new pairs; no allocation), a longer one with a heap over a linked list of parts
   (`merge_piece`): O(n log n), so a megabyte-long piece (one character repeated) takes about ten times
   what 100 kB takes, not a hundred.

`CompiledEncoder` holds one tokenizer's tables and cache and runs the call; the tables are in lookup_tables.
"""

import heapq

import numpy as np
from numba import njit

from . import reference
from .lookup_tables import PairTable, TokenLookup, empty_slots, find, insert, key_of, pair_rank
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from .pretokenizer import GIVEN, GPT2, GPT4, piece_end
from .unicode_classes import class_table

SCANNED = {GPT2_SPLIT_PATTERN: GPT2, GPT4_SPLIT_PATTERN: GPT4}  # patterns the pre-tokenizer scans itself
MAX_SHORT_PIECE_BYTES = 64  # up to here a scan for the lowest rank beats a heap's allocations
MAX_CACHED_PIECE_BYTES = 256  # longer pieces are rare and would crowd the cache out
CACHE_PIECES = 1 << 16  # the cache is emptied when full: bounded memory (about 9 MB)
CACHE_KEY_BYTES = 1 << 21  # on an endless stream of new text
CACHE_IDS = 1 << 19


@njit(cache=True)
def merge_piece(parts, keys, values, out, written):
    """Merge the byte ids `parts` (int64, overwritten) by tiktoken's rule; append the ids to out[written:].
    Returns the new `written`."""
    n = len(parts)
    next_part = np.arange(1, n + 1)
    prev_part = np.arange(-1, n - 1)
    heap = [np.int64(0) for _ in range(0)]  # rank << 32 | part: (rank, part) in one int64, ordered alike
    for i in range(n - 1):
        rank = pair_rank(keys, values, parts[i], parts[i + 1])
        if rank >= 0:
            heap.append((rank << 32) | i)
    heapq.heapify(heap)
    while heap:
        entry = heapq.heappop(heap)
        rank, i = entry >> 32, entry & 0xFFFFFFFF
        j = next_part[i]
        if parts[i] < 0 or j >= n or pair_rank(keys, values, parts[i], parts[j]) != rank:
            continue  # stale: part i or its neighbour changed since this entry was pushed
        parts[i] = rank
        parts[j] = -1
        after = next_part[j]
        next_part[i] = after
        if after < n:
            prev_part[after] = i
            rank_right = pair_rank(keys, values, rank, parts[after])
            if rank_right >= 0:
                heapq.heappush(heap, (rank_right << 32) | i)
        before = prev_part[i]
        if before >= 0:
            rank_left = pair_rank(keys, values, parts[before], rank)
            if rank_left >= 0:
                heapq.heappush(heap, (rank_left << 32) | before)
    for i in range(n):
        if parts[i] >= 0:
            out[written] = parts[i]
            written += 1
    return written


@njit(cache=True)
def merge_short(parts, ranks, n, keys, values, out, written):
    """merge_piece for parts[:n], in place: ranks[k] is the rank of the pair (parts[k], parts[k + 1]) or -1,
    kept up to date as parts merge. Quadratic in n, so only for short pieces."""
    for k in range(n - 1):
        ranks[k] = pair_rank(keys, values, parts[k], parts[k + 1])
    while n > 1:
        best, at = -1, -1
        for k in range(n - 1):  # the lowest rank, the leftmost on ties
            if ranks[k] >= 0 and (best < 0 or ranks[k] < best):
                best, at = ranks[k], k
        if at < 0:
            break
        parts[at] = best
        for k in range(at + 1, n - 1):
            parts[k] = parts[k + 1]
        for k in range(at + 1, n - 2):
            ranks[k] = ranks[k + 1]
        n -= 1
        if at < n - 1:
            ranks[at] = pair_rank(keys, values, parts[at], parts[at + 1])
        if at > 0:
            ranks[at - 1] = pair_rank(keys, values, parts[at - 1], parts[at])
    out[written : written + n] = parts[:n]
    return written + n


# ----- pieces seen before -----

class PieceCache:
    """piece bytes -> ids, shared by the calls on one tokenizer; emptied whenever it fills.

    Holds at most `pieces` pieces, key_bytes bytes of them and `ids` ids (about 9 MB by default)."""

    def __init__(self, pieces: int = CACHE_PIECES, key_bytes: int = CACHE_KEY_BYTES, ids: int = CACHE_IDS):
        self.slots = empty_slots(pieces)
        self.keys = np.zeros(key_bytes, dtype=np.uint8)
        self.ids = np.zeros(ids, dtype=np.int64)
        self.used = np.zeros(3, dtype=np.int64)  # pieces, key bytes, ids
        self.capacity = pieces

    def clear(self) -> None:
        self.slots[:, 1] = -1
        self.used.fill(0)

    def __len__(self) -> int:
        return int(self.used[0])

    def arrays(self) -> tuple:
        return self.slots, self.keys, self.ids, self.used, self.capacity


@njit(cache=True)
def remember(data, lo, hi, word, h, ids, ids_lo, ids_hi, cache):
    """Store piece data[lo:hi] -> ids[ids_lo:ids_hi], first emptying the cache if it is full."""
    slots, keys, cache_ids, used, capacity = cache
    if used[0] == capacity or used[1] + hi - lo > len(keys) or used[2] + ids_hi - ids_lo > len(cache_ids):
        slots[:, 1] = -1
        used.fill(0)
    if hi - lo > len(keys) or ids_hi - ids_lo > len(cache_ids):
        return  # larger than the whole cache
    value = (used[2] << 9) | (ids_hi - ids_lo)  # where its ids start, how many (<= 256, one per byte)
    insert(slots, word, h, hi - lo, value, used[1])
    keys[used[1] : used[1] + hi - lo] = data[lo:hi]
    cache_ids[used[2] : used[2] + ids_hi - ids_lo] = ids[ids_lo:ids_hi]
    used[0] += 1
    used[1] += hi - lo
    used[2] += ids_hi - ids_lo


# ----- the whole text -----

@njit(cache=True)
def encode_bytes(data, kind, table, given_ends, byte_ids, token_slots, token_bytes, pairs, cache):
    """The ids of UTF-8 bytes `data` (uint8), as an int64 array.

    kind: pretokenizer.GPT2 or GPT4 to scan the pieces here, GIVEN to take their ends from `given_ends`.
    table: unicode_classes.class_table(). byte_ids: (256,) byte value -> its id. token_slots, token_bytes:
    a TokenLookup's slots and flat; pairs: a PairTable's (keys, values); cache: PieceCache.arrays().
    """
    keys, values = pairs
    cache_slots, cache_keys, cache_ids = cache[0], cache[1], cache[2]
    n = len(data)
    out = np.empty(n, dtype=np.int64)  # a piece never has more ids than bytes
    short_parts = np.empty(MAX_SHORT_PIECE_BYTES, dtype=np.int64)
    short_ranks = np.empty(MAX_SHORT_PIECE_BYTES, dtype=np.int64)
    written, lo, p = 0, 0, 0
    while lo < n:
        if kind == GIVEN:
            hi = given_ends[p]
            p += 1
        else:
            hi = piece_end(data, lo, n, table, kind)
        word, h = key_of(data, lo, hi)
        token_id = find(token_slots, data, lo, hi, word, h, token_bytes)
        if token_id >= 0:
            out[written] = token_id
            written += 1
            lo = hi
            continue
        cacheable = hi - lo <= MAX_CACHED_PIECE_BYTES
        found = find(cache_slots, data, lo, hi, word, h, cache_keys) if cacheable else -1
        if found >= 0:
            start, count = found >> 9, found & 511
            out[written : written + count] = cache_ids[start : start + count]
            written += count
        else:
            parts = short_parts if hi - lo <= MAX_SHORT_PIECE_BYTES else np.empty(hi - lo, dtype=np.int64)
            for k in range(hi - lo):
                parts[k] = byte_ids[data[lo + k]]
            before = written
            if hi - lo <= MAX_SHORT_PIECE_BYTES:
                written = merge_short(parts, short_ranks, hi - lo, keys, values, out, written)
            else:
                written = merge_piece(parts, keys, values, out, written)
            if cacheable:
                remember(data, lo, hi, word, h, out, before, written, cache)
        lo = hi
    return out[:written]


class CompiledEncoder:
    """The compiled encode of one vocabulary: built on a tokenizer's first encode (training and loading do
    not need it), kept until its merges change.

    token_ids: bytes -> lowest id of the ordinary token so spelled. byte_ids: (256,) byte value -> its id.
    decoder: the tokenizer's decoder.TokenTable, whose first n_ordinary rows are the ordinary tokens.
    """

    def __init__(self, pattern: str | None, split_regex, token_ids: dict[bytes, int], byte_ids, decoder,
                 n_ordinary: int):
        self.kind = SCANNED.get(pattern, GIVEN)
        self.split_regex = split_regex
        self.table = class_table() if self.kind != GIVEN else np.zeros(1, dtype=np.uint8)
        self.byte_ids = np.array(byte_ids, dtype=np.int64)
        lookup = TokenLookup(decoder.flat, decoder.offsets[:n_ordinary], decoder.lengths[:n_ordinary])
        self.token_slots, self.token_bytes = lookup.slots, lookup.flat
        lefts, rights, ranks = [], [], []  # every split of every token into two tokens, with its rank
        for token, token_id in token_ids.items():
            for cut in range(1, len(token)):
                left, right = token_ids.get(token[:cut]), token_ids.get(token[cut:])
                if left is not None and right is not None:
                    lefts.append(left)
                    rights.append(right)
                    ranks.append(token_id)
        pairs = PairTable(lefts, rights, ranks)
        self.pairs = (pairs.keys, pairs.values)
        self.cache = PieceCache()

    def encode(self, data: bytes, text: str) -> list[int]:
        """The ids of `text`, whose UTF-8 bytes are `data`."""
        ends = np.zeros(0, dtype=np.int64)
        if self.kind == GIVEN:
            pieces = reference.split(self.split_regex, text)
            ends = np.cumsum([len(piece.encode("utf-8")) for piece in pieces], dtype=np.int64)
        ids = encode_bytes(np.frombuffer(data, dtype=np.uint8), self.kind, self.table, ends, self.byte_ids,
                           self.token_slots, self.token_bytes, self.pairs, self.cache.arrays())
        return ids.tolist()
