"""The compiled encoder: text bytes in, ids out, in one numba call (reference.encode is the definition).

For each piece the pre-tokenizer cuts (pretokenizer.piece_end, or the ends `regex` found for any other
pattern), in this order:
1. a piece that is itself a token is that token: one lookup in `TokenLookup`, as tiktoken does;
2. a piece seen before is served from the `PieceCache`: natural text repeats its words (tinyshakespeare
   has 298k pieces but 15k distinct ones), so most pieces cost one hash and one comparison;
3. else its bytes are merged by tiktoken's rule, lowest-rank adjacent pair first, leftmost on ties, with
   a heap over a linked list of parts (`merge_piece`): O(n log n), so a megabyte-long piece (one
   character repeated) takes about ten times what 100 kB takes, not a hundred.

`CompiledEncoder` holds one tokenizer's tables and cache and runs the call; the tables are in lookup_tables.
"""

import heapq

import numpy as np
from numba import njit

from .lookup_tables import EMPTY, PairTable, TokenLookup, fnv1a, pair_rank, same_bytes, whole_token
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from .pretokenizer import GIVEN, GPT2, GPT4, piece_end
from .unicode_classes import class_table

SCANNED = {GPT2_SPLIT_PATTERN: GPT2, GPT4_SPLIT_PATTERN: GPT4}  # patterns the pre-tokenizer scans itself
MAX_CACHED_PIECE_BYTES = 256  # longer pieces are rare and would crowd the cache out
CACHE_SLOTS = 1 << 17  # the cache keeps at most half as many pieces, and is emptied when full:
CACHE_KEY_BYTES = 1 << 21  # bounded memory (about 5 MB) on an endless stream of new text
CACHE_IDS = 1 << 19


@njit(cache=True)
def merge_piece(parts, keys, values, out, written):
    """Merge the byte ids `parts` (int64, overwritten) by tiktoken's rule; append the ids to out[written:].
    Returns the new `written`."""
    n = len(parts)
    next_part = np.arange(1, n + 1)
    prev_part = np.arange(-1, n - 1)
    heap = [(np.int64(0), np.int64(0)) for _ in range(0)]  # (rank, part): an empty typed list
    for i in range(n - 1):
        rank = pair_rank(keys, values, parts[i], parts[i + 1])
        if rank >= 0:
            heap.append((rank, np.int64(i)))
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
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
                heapq.heappush(heap, (rank_right, i))
        before = prev_part[i]
        if before >= 0:
            rank_left = pair_rank(keys, values, parts[before], rank)
            if rank_left >= 0:
                heapq.heappush(heap, (rank_left, before))
    for i in range(n):
        if parts[i] >= 0:
            out[written] = parts[i]
            written += 1
    return written


# ----- pieces seen before -----

class PieceCache:
    """piece bytes -> ids, shared by the calls on one tokenizer; emptied whenever one of its arrays fills.

    Holds at most slots // 2 pieces, key_bytes bytes of them and `ids` ids (about 5 MB by default)."""

    def __init__(self, slots: int = CACHE_SLOTS, key_bytes: int = CACHE_KEY_BYTES, ids: int = CACHE_IDS):
        if slots < 2 or slots & (slots - 1):
            raise ValueError(f"the cache's slots must be a power of two >= 2, got {slots}")
        self.slots = np.full(slots, EMPTY, dtype=np.int64)
        self.entries = np.zeros((slots // 2, 5), dtype=np.int64)  # hash, key start, key length, ids start, count
        self.keys = np.zeros(key_bytes, dtype=np.uint8)
        self.ids = np.zeros(ids, dtype=np.int64)
        self.used = np.zeros(3, dtype=np.int64)  # entries, key bytes, ids

    def clear(self) -> None:
        self.slots.fill(EMPTY)
        self.used.fill(0)

    def __len__(self) -> int:
        return int(self.used[0])

    def arrays(self) -> tuple:
        return self.slots, self.entries, self.keys, self.ids, self.used


@njit(cache=True)
def cached_ids(data, lo, hi, h, slots, entries, keys):
    """The entry of piece data[lo:hi] (hash h) in the cache, or -1."""
    mask = len(slots) - 1
    slot = np.int64(h & np.uint64(mask))
    while slots[slot] != EMPTY:
        e = slots[slot]
        if entries[e, 0] == np.int64(h) and entries[e, 2] == hi - lo and same_bytes(keys, entries[e, 1], data, lo, hi - lo):
            return e
        slot = (slot + 1) & mask
    return -1


@njit(cache=True)
def remember(data, lo, hi, h, ids, ids_lo, ids_hi, slots, entries, keys, cache_ids, used):
    """Store piece data[lo:hi] (hash h) -> ids[ids_lo:ids_hi], first emptying the cache if it is full."""
    if used[0] == len(entries) or used[1] + hi - lo > len(keys) or used[2] + ids_hi - ids_lo > len(cache_ids):
        slots.fill(EMPTY)
        used.fill(0)
    if hi - lo > len(keys) or ids_hi - ids_lo > len(cache_ids):
        return  # larger than the whole cache
    mask = len(slots) - 1
    slot = np.int64(h & np.uint64(mask))
    while slots[slot] != EMPTY:
        slot = (slot + 1) & mask
    e = used[0]
    slots[slot] = e
    entries[e, 0], entries[e, 1], entries[e, 2] = np.int64(h), used[1], hi - lo
    entries[e, 3], entries[e, 4] = used[2], ids_hi - ids_lo
    keys[used[1] : used[1] + hi - lo] = data[lo:hi]
    cache_ids[used[2] : used[2] + ids_hi - ids_lo] = ids[ids_lo:ids_hi]
    used[0] += 1
    used[1] += hi - lo
    used[2] += ids_hi - ids_lo


# ----- the whole text -----

@njit(cache=True)
def encode_bytes(data, kind, table, given_ends, byte_ids, tokens, pairs, cache):
    """The ids of UTF-8 bytes `data` (uint8), as an int64 array.

    kind: pretokenizer.GPT2 or GPT4 to scan the pieces here, GIVEN to take their ends from `given_ends`.
    table: unicode_classes.class_table(). byte_ids: (256,) byte value -> its id. tokens: a TokenLookup's
    (slots, hashes, flat, offsets, lengths); pairs: a PairTable's (keys, values); cache: PieceCache.arrays().
    """
    slots, hashes, flat, offsets, lengths = tokens
    keys, values = pairs
    cache_slots, entries, cache_keys, cache_ids, used = cache
    n = len(data)
    out = np.empty(n, dtype=np.int64)  # a piece never has more ids than bytes
    written, lo, p = 0, 0, 0
    while lo < n:
        if kind == GIVEN:
            hi = given_ends[p]
            p += 1
        else:
            hi = piece_end(data, lo, n, table, kind)
        h = fnv1a(data, lo, hi)
        token_id = whole_token(data, lo, hi, h, slots, hashes, flat, offsets, lengths)
        if token_id >= 0:
            out[written] = token_id
            written += 1
            lo = hi
            continue
        cacheable = hi - lo <= MAX_CACHED_PIECE_BYTES
        e = cached_ids(data, lo, hi, h, cache_slots, entries, cache_keys) if cacheable else -1
        if e >= 0:
            start, count = entries[e, 3], entries[e, 4]
            out[written : written + count] = cache_ids[start : start + count]
            written += count
        else:
            parts = np.empty(hi - lo, dtype=np.int64)
            for k in range(hi - lo):
                parts[k] = byte_ids[data[lo + k]]
            before = written
            written = merge_piece(parts, keys, values, out, written)
            if cacheable:
                remember(data, lo, hi, h, out, before, written, cache_slots, entries, cache_keys, cache_ids, used)
        lo = hi
    return out[:written]


class CompiledEncoder:
    """The compiled encode of one vocabulary: built on a tokenizer's first encode (training and loading do
    not need it), kept until its merges change.

    token_ids: bytes -> lowest id of the ordinary token so spelled. byte_ids: (256,) byte value -> its id.
    decoder: the tokenizer's decoder.TokenTable (its first len(token_ids) rows are the ordinary tokens).
    """

    def __init__(self, pattern: str | None, split_regex, token_ids: dict[bytes, int], byte_ids, decoder):
        self.kind = SCANNED.get(pattern, GIVEN)
        self.split_regex = split_regex
        self.table = class_table() if self.kind != GIVEN else np.zeros(1, dtype=np.uint8)
        self.byte_ids = np.array(byte_ids, dtype=np.int64)
        n_ordinary = len(token_ids)
        lookup = TokenLookup(decoder.flat, decoder.offsets[:n_ordinary], decoder.lengths[:n_ordinary])
        self.tokens = (lookup.slots, lookup.hashes, lookup.flat, lookup.offsets, lookup.lengths)
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
            pieces = [text] if self.split_regex is None else self.split_regex.findall(text)
            ends = np.cumsum([len(piece.encode("utf-8")) for piece in pieces], dtype=np.int64)
        ids = encode_bytes(np.frombuffer(data, dtype=np.uint8), self.kind, self.table, ends, self.byte_ids,
                           self.tokens, self.pairs, self.cache.arrays())
        return ids.tolist()
