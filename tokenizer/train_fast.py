"""BPE training that counts pairs once and then only updates what each merge changes.

The semantics are minbpe's, the speed is not. At every step the most frequent adjacent pair of ids,
counted over all chunks at every adjacent position (so "aaa" holds the pair (a, a) twice), becomes
a new token, and each chunk replaces its occurrences left to right without overlap.

Tie-break: among equally frequent pairs the one with the lowest ids wins, comparing (left, right)
as a tuple. This rule depends only on the counts, not on the order chunks were seen in, so it is
deterministic and easy for the plain recount trainer in the tests to reproduce.

How it is fast:
1. The text is pre-split once and identical chunks are merged with a count (natural text repeats
   its words, so distinct chunks are far fewer), so work scales with the vocabulary of chunks, not the text.
2. `where[pair]` lists the chunks that contain the pair, so a merge touches only those chunks. It
   may still list chunks that lost the pair since; those are skipped when met, not pruned eagerly.
3. The next pair comes from a heap of (-count, pair) with lazy deletion: a count change pushes a new
   entry instead of updating the old one, and an entry whose count is no longer current is dropped
   when it surfaces.
Plain Python is fast enough once each merge touches only the chunks that hold its pair, so this
loop stays readable Python rather than numba.
"""

import heapq
from collections import defaultdict


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by `new_id`, left to right, no overlap."""
    first, second = pair
    merged = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == first and i + 1 < n and ids[i + 1] == second:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def train_merges(chunk_counts: dict[bytes, int], n_merges: int, progress=None) -> list[tuple[int, int]]:
    """Learn up to `n_merges` merges from distinct chunks and their counts.

    Merge k creates id 256 + k from the pair merges[k]; ids 0..255 are the bytes. Training stops
    early when no adjacent pair is left. `progress`, if given, is called once per merge.
    """
    words = [list(chunk) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (ids, count) in enumerate(zip(words, counts)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += count
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < n_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair) != -neg_count:
            continue  # stale entry: the count changed after it was pushed
        new_id = 256 + len(merges)
        merges.append(pair)
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for w in where.pop(pair):
            old = words[w]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):
                continue  # the chunk lost this pair to an earlier merge
            words[w] = new
            count = counts[w]
            for old_pair in zip(old, old[1:]):
                delta[old_pair] -= count
            for new_pair in zip(new, new[1:]):
                delta[new_pair] += count
                if new_id in new_pair:
                    where[new_pair].add(w)
        for changed, change in delta.items():
            if change:
                count = pair_counts[changed] + change
                if count:
                    pair_counts[changed] = count
                    heapq.heappush(heap, (-count, changed))
                else:
                    del pair_counts[changed]
        if progress is not None:
            progress()
    return merges
