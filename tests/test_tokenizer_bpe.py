"""BPETokenizer: training against a plain recount oracle, encoding against a plain tiktoken-style
oracle (and tiktoken itself when installed), special tokens, round trips.

The oracles here are deliberately the slow, obvious algorithms; other tokenizer test files import
`CORPUS`, `texts` and `trained` from this module.
"""

import functools

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer

PATTERNS = [GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN, None]

CORPUS = (
    "First Citizen:\r\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.   Résumé naïve café — ünïcödé, 日本語のテキスト, emoji 😀👍🏽 and 🇺🇸!\n"
    "Numbers 1234567 and 3.14159; code: x = f(y) + 42\t\t# comment\n"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbb          spaces\n"
    "You are all resolved rather to die than to famish? Resolved. resolved.\n"
) * 3

# Text that stresses byte-level BPE: any unicode, plus pieces chosen to hit edge cases
# (combining marks, flags and skin tones, \r\n, long whitespace, runs of one character).
SPECIAL_PIECES = ["\r\n", "\n\n\n", "    ", "\t \t", " \u00a0 ", "e\u0301", "😀", "🇺🇸", "👍🏽", "'s", "'LL", "123456"]
runs = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", " ", "\n", "é", "😀", "ab"]), st.integers(1, 60))
texts = st.lists(
    st.one_of(st.text(max_size=20), st.text(alphabet="ab \n", max_size=30), st.sampled_from(SPECIAL_PIECES), runs),
    max_size=12,
).map("".join)


def recount_merges(text: str, pattern: str | None, vocab_size: int) -> list[tuple[int, int]]:
    """The straightforward trainer: recount every pair after every merge (minbpe's loop)."""
    pieces = regex.findall(pattern, text) if pattern else [text]
    chunks = [list(piece.encode("utf-8")) for piece in pieces]
    merges = []
    while len(merges) < vocab_size - 256:
        counts = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))  # documented tie-break: lowest ids
        new_id = 256 + len(merges)
        for c, ids in enumerate(chunks):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            chunks[c] = out
        merges.append(best)
    return merges


def reference_encode(tok: BPETokenizer, text: str) -> list[int]:
    """tiktoken's algorithm written plainly: per chunk, a whole-token lookup, else repeatedly merge
    the adjacent pair whose bytes have the lowest rank (leftmost first). Quadratic, obviously right."""
    ranks = {token: i for i, token in sorted(tok.vocab.items(), reverse=True) if i < 256 + len(tok.merges)}
    ids = []
    for piece in regex.findall(tok.pattern, text) if tok.pattern else ([text] if text else []):
        data = piece.encode("utf-8")
        if data in ranks:
            ids.append(ranks[data])
            continue
        parts = [bytes([b]) for b in data]
        while len(parts) > 1:
            candidates = [(ranks.get(parts[i] + parts[i + 1], float("inf")), i) for i in range(len(parts) - 1)]
            rank, i = min(candidates)
            if rank == float("inf"):
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids += [ranks[part] for part in parts]
    return ids


@functools.cache
def trained(pattern: str | None = GPT4_SPLIT_PATTERN, vocab_size: int = 400) -> BPETokenizer:
    """A tokenizer trained on CORPUS (cached: tests must not modify it)."""
    return BPETokenizer(pattern).train(CORPUS, vocab_size)


def test_wikipedia_example():
    # aaabdaaabac: "aa" (4 times, counted at every position) -> 256; then "ab" and (256, a) tie at
    # 2 and the lowest pair (97, 98) wins -> 257; then (256, 257) -> 258, giving X d X a c.
    tok = BPETokenizer(pattern=None).train("aaabdaaabac", vocab_size=259)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.vocab[258] == b"aaab"
    assert tok.decode([258, 100]) == "aaabd"


@pytest.mark.parametrize("pattern", PATTERNS, ids=["gpt4", "gpt2", "none"])
@settings(max_examples=15)
@given(text=texts, n_merges=st.integers(0, 40))
def test_fast_trainer_matches_recount(pattern, text, n_merges):
    fast = BPETokenizer(pattern).train(text, 256 + n_merges)
    assert fast.merges == recount_merges(text, pattern, 256 + n_merges)


def test_fast_trainer_matches_recount_on_corpus():
    assert trained(GPT4_SPLIT_PATTERN, 400).merges == recount_merges(CORPUS, GPT4_SPLIT_PATTERN, 400)


def test_training_is_deterministic():
    first = BPETokenizer().train(CORPUS, 350)
    again = BPETokenizer().train(CORPUS, 350)
    assert first.merges == again.merges and len(first.merges) == 94


def test_training_stops_when_pairs_run_out():
    tok = BPETokenizer(pattern=None).train("abab", vocab_size=1000)
    assert tok.merges == [(97, 98), (256, 256)] and tok.vocab_size == 258


def test_vocab_size_below_256_is_rejected():
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer().train("abc", 100)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["gpt4", "gpt2", "none"])
@given(text=texts)
def test_round_trip_and_ids_in_vocab(pattern, text):
    tok = trained(pattern)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")
    assert all(0 <= i < tok.vocab_size for i in ids)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["gpt4", "gpt2", "none"])
@given(text=texts)
def test_encode_matches_reference_algorithm(pattern, text):
    tok = trained(pattern)
    assert tok.encode_ordinary(text) == reference_encode(tok, text)


def test_encode_matches_reference_on_corpus_and_cache_gives_same_ids():
    tok = BPETokenizer().train(CORPUS, 400)
    cold = tok.encode(CORPUS)
    assert cold == reference_encode(tok, CORPUS)
    assert tok.encode(CORPUS) == cold  # now served from the chunk cache
    assert len(cold) < len(CORPUS.encode()) / 2


@given(text=texts)
def test_encode_matches_tiktoken(text):
    tiktoken = pytest.importorskip("tiktoken")
    tok = trained(GPT4_SPLIT_PATTERN)
    ranks = {token: i for i, token in sorted(tok.vocab.items(), reverse=True)}
    encoding = tiktoken.Encoding("trained", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})
    assert tok.encode_ordinary(text) == encoding.encode_ordinary(text)


@pytest.mark.parametrize("piece", ["a", " ", "ab", "😀"])
def test_long_runs_encode_in_near_linear_time(piece):
    # 100,000 characters in one chunk: a quadratic merge loop would take minutes here.
    tok = trained(None)
    text = piece * (100_000 // len(piece))
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    short = piece * 300
    assert tok.encode(short) == reference_encode(tok, short)


def test_long_text_is_encoded_but_long_chunks_are_not_cached():
    tok = BPETokenizer(pattern=None).train(CORPUS, 300)
    text = CORPUS * 20
    assert tok.decode(tok.encode(text)) == text
    assert len(tok._encoder.cache) == 0  # the one piece is too long to keep


def test_decode_replaces_invalid_utf8_and_decode_bytes_keeps_it():
    tok = trained()
    assert tok.decode_bytes([0xC3]) == b"\xc3"  # the first of the two bytes of "é"
    assert tok.decode([0xC3]) == "\ufffd"
    assert tok.decode([0xC3, 0xA9]) == "é"


@pytest.mark.parametrize("bad", [[-1], [400], [1, 2.5], ["7"], [None]])
def test_unknown_id_raises_naming_it(bad):
    with pytest.raises(ValueError, match="unknown token id"):
        trained().decode(bad)


def test_lone_surrogate_gets_a_clear_error():
    tok = trained()
    with pytest.raises(ValueError, match=r"U\+D800 at index 3"):
        tok.encode("abc\ud800def")
    with pytest.raises(ValueError, match="surrogate"):
        BPETokenizer().train("x\udfff", 300)


def special_tokenizer() -> BPETokenizer:
    tok = BPETokenizer().train(CORPUS, 300)
    tok.register_special_tokens({"<|endoftext|>": 300, "<|fim|>": 302})
    return tok


def test_special_tokens_each_mode():
    tok = special_tokenizer()
    text = "hear me<|endoftext|>speak<|fim|>."
    plain = tok.encode_ordinary(text)
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>' at index 7"):
        tok.encode(text)  # default: none_raise
    assert tok.encode(text, allowed_special="none") == plain
    everything = tok.encode(text, allowed_special="all")
    assert everything == tok.encode("hear me") + [300] + tok.encode("speak") + [302] + tok.encode(".")
    with pytest.raises(ValueError, match="<\\|fim\\|>"):
        tok.encode(text, allowed_special={"<|endoftext|>"})  # the other special is still disallowed
    only_eot = tok.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"})
    assert only_eot == tok.encode("a") + [300] + tok.encode("b")
    assert tok.decode(everything) == text
    assert tok.vocab_size == 303 and tok.vocab[302] == b"<|fim|>"
    assert tok.encode("no specials here") == tok.encode_ordinary("no specials here")


def test_special_token_errors():
    tok = special_tokenizer()
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="unregistered"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="ordinary tokens"):
        tok.register_special_tokens({"<|bad|>": 5})
    with pytest.raises(ValueError, match="share an id"):
        tok.register_special_tokens({"<|again|>": 300})
    with pytest.raises(ValueError, match="below vocab_size=400"):
        tok.train(CORPUS, 400)  # the new merges would need ids 300 and 302
    assert len(tok.merges) == 44 and tok.special_tokens["<|fim|>"] == 302  # left unchanged


def test_gap_between_special_ids_is_unknown():
    with pytest.raises(ValueError, match="unknown token id 301"):
        special_tokenizer().decode([301])
