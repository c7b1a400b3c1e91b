"""The reading path: BPE in plain Python, minbpe's shape, with tiktoken's encoding rule. Read this first.

The compiled modules (pretokenizer, encoder, decoder, trainer) are drop-ins for these functions, tested
equal to them; `NANOGRAD_KERNELS=numpy` or `BPETokenizer(..., compiled=False)` runs these instead.

Encoding (`encode_pieces`): the text is cut into pieces by the split pattern (`split`; pairs never cross
pieces); a piece that is itself a token becomes that token; otherwise it starts as bytes, and the adjacent
pair whose concatenation is the token of lowest rank is merged, the leftmost on ties, until no adjacent
pair forms a token (`merge_piece`). "Forms a token" is judged on the bytes, as tiktoken does.

Training (`train_merges`) counts pairs once and then only updates what each merge changes. The semantics
are minbpe's: at every step the most frequent adjacent pair of ids, counted over all pieces at every
adjacent position (so "aaa" holds the pair (a, a) twice), becomes a new token, and each piece replaces its
occurrences left to right without overlap.

Tie-break: among equally frequent pairs the one with the lowest ids wins, comparing (left, right)
as a tuple. This rule depends only on the counts, not on the order pieces were seen in, so it is
deterministic and easy for the plain recount trainer in the tests to reproduce.

How training stays quick in Python:
1. The text is pre-split once and identical pieces are merged with a count (natural text repeats
   its words, so distinct pieces are far fewer), so work scales with the vocabulary of pieces, not the text.
2. `where[pair]` lists the pieces that contain the pair, so a merge touches only those pieces. It
   may still list pieces that lost the pair since; those are skipped when met, not pruned eagerly.
3. The next pair comes from a heap of (-count, pair) with lazy deletion: a count change pushes a new
   entry instead of updating the old one, and an entry whose count is no longer current is dropped
   when it surfaces.
"""

import heapq
import math
from collections import defaultdict


def split(split_regex, text: str) -> list[str]:
    """The pieces of `text`: what the compiled `split_regex` finds, or the whole text if it is None."""
    if split_regex is None:
        return [text] if text else []
    return split_regex.findall(text)


def merge_piece(data: bytes, ranks: dict[bytes, int]) -> list[int]:
    """The ids of one piece's bytes: merge the adjacent pair of lowest rank, leftmost first, until none
    forms a token. Quadratic in the piece's length: obviously right, not fast."""
    parts = [data[i : i + 1] for i in range(len(data))]
    while len(parts) > 1:
        rank, i = min((ranks.get(parts[i] + parts[i + 1], math.inf), i) for i in range(len(parts) - 1))
        if rank == math.inf:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[part] for part in parts]


def encode_pieces(pieces: list[str], ranks: dict[bytes, int]) -> list[int]:
    """The ids of a text cut into `pieces`; ranks: token bytes -> lowest id of the token so spelled."""
    ids_of: dict[str, list[int]] = {}  # each distinct piece is merged once
    ids: list[int] = []
    for piece in pieces:
        if piece not in ids_of:
            data = piece.encode("utf-8")
            ids_of[piece] = [ranks[data]] if data in ranks else merge_piece(data, ranks)
        ids += ids_of[piece]
    return ids


def decode_bytes(ids, tokens: list[bytes]) -> bytes:
    """The bytes of a sequence of ids (all known): tokens[i] is token i's bytes."""
    return b"".join(tokens[i] for i in ids)


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
    """Learn up to `n_merges` merges from distinct pieces (bytes) and their counts.

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
