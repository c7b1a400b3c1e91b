"""Reading and writing other tokenizers' files: tiktoken rank files and OpenAI's GPT-2 files.

A tiktoken file lists `<base64 of the token's bytes> <rank>`; the rank is the token id and the merge
priority. OpenAI's GPT-2 release has `encoder.json` (token string -> id) and `vocab.bpe` (the merges
in order, one "left right" per line), where each byte is spelled as a printable unicode character
(`bytes_to_unicode`), so that whitespace and control bytes survive in a text file.

Readers return plain parts (byte ids, merges, special tokens); `BPETokenizer` builds itself from them.
"""

import base64
import binascii
import json
from pathlib import Path

from .base import write_atomic


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character map: printable Latin-1 bytes map to themselves, the other 68 bytes
    to the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return mapping


def read_tiktoken(path) -> dict[bytes, int]:
    """token bytes -> rank, from a tiktoken rank file; a bad line raises ValueError naming it."""
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            words = line.split()
            try:
                if len(words) != 2:
                    raise ValueError
                token, rank = base64.b64decode(words[0], validate=True), int(words[1])
            except (ValueError, binascii.Error):
                raise ValueError(
                    f"{path}, line {line_no}: expected '<base64 token> <rank>', got {line[:60]!r}"
                ) from None
            if token in ranks:
                raise ValueError(f"{path}, line {line_no}: token {token!r} is listed twice")
            ranks[token] = rank
    return ranks


def merges_from_ranks(ranks: dict[bytes, int], source: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Byte ids and merges that rebuild a rank table.

    Ranks must be 0..N-1 with the 256 single bytes first (true of GPT-2, cl100k and o200k). Token r
    is recorded as the merge of the first cut into two tokens of lower rank. Which cut is chosen does
    not change encoding, which looks at the bytes of adjacent parts, not at the recorded merges.
    """
    tokens = sorted(ranks, key=ranks.__getitem__)
    if [ranks[token] for token in tokens] != list(range(len(tokens))):
        raise ValueError(f"{source}: ranks must be exactly 0..{len(tokens) - 1}, each used once")
    if sorted(tokens[:256]) != [bytes([b]) for b in range(256)]:
        raise ValueError(f"{source}: ranks 0..255 must be the 256 single bytes")
    byte_ids = [ranks[bytes([b])] for b in range(256)]
    merges = []
    # Cuts are tried only where a token ends: at most one per distinct token length, not one per byte, so a
    # hostile file with one megabyte-long token cannot make this quadratic in the file's size.
    lengths = sorted({len(token) for token in tokens})
    for rank in range(256, len(tokens)):
        token = tokens[rank]
        for cut in lengths:
            if cut >= len(token):
                raise ValueError(f"{source}: token {token[:40]!r} (rank {rank}) is not two tokens of lower rank")
            left, right = ranks.get(token[:cut], rank), ranks.get(token[cut:], rank)
            if left < rank and right < rank:
                merges.append((left, right))
                break
    return byte_ids, merges


def read_gpt2_files(encoder_json, vocab_bpe) -> tuple[list[int], list[tuple[int, int]], dict[str, int]]:
    """Byte ids, merges and special tokens from OpenAI's encoder.json and vocab.bpe."""
    try:
        encoder: dict[str, int] = json.loads(_read_text(encoder_json))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{encoder_json}: not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(encoder, dict) or not all(type(i) is int and i >= 0 for i in encoder.values()):
        raise ValueError(f"{encoder_json}: expected a JSON object of token -> id (an integer >= 0)")
    byte_to_char = bytes_to_unicode()
    try:
        byte_ids = [encoder[byte_to_char[b]] for b in range(256)]
    except KeyError as exc:
        raise ValueError(f"{encoder_json}: no entry for the byte token {exc.args[0]!r}") from None
    if sorted(byte_ids) != list(range(256)):
        raise ValueError(f"{encoder_json}: the 256 byte tokens must have the ids 0..255")
    merges = []
    lines = _read_text(vocab_bpe).split("\n")
    for line_no, line in enumerate(lines, start=1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        merged_id = 256 + len(merges)
        if len(parts) != 2 or any(part not in encoder for part in parts):
            raise ValueError(f"{vocab_bpe}, line {line_no}: expected two tokens of encoder.json, got {line[:60]!r}")
        if encoder.get(parts[0] + parts[1]) != merged_id:
            raise ValueError(
                f"{vocab_bpe}, line {line_no}: merge {merged_id - 256} should create id {merged_id}, "
                f"but {encoder_json} gives {parts[0] + parts[1]!r} the id {encoder.get(parts[0] + parts[1])}"
            )
        merges.append((encoder[parts[0]], encoder[parts[1]]))
    special_tokens = {name: i for name, i in encoder.items() if i >= 256 + len(merges)}
    if len(encoder) != 256 + len(merges) + len(special_tokens):
        raise ValueError(f"{encoder_json}: has {len(encoder)} entries, but 256 bytes + {len(merges)} merges "
                         f"of {vocab_bpe} + {len(special_tokens)} special tokens make a different number")
    return byte_ids, merges, special_tokens


def _read_text(path) -> str:
    """A UTF-8 file's text; ValueError naming the file if it is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _ordinary_tokens(tokenizer) -> list[bytes]:
    """The ordinary tokens by id; duplicates cannot be written to rank-keyed formats."""
    vocab = tokenizer.vocab
    tokens = [vocab[i] for i in range(256 + len(tokenizer.merges))]
    if len(set(tokens)) != len(tokens):
        raise ValueError("two merges spell the same bytes; a rank file can hold each token only once")
    return tokens


def write_tiktoken(tokenizer, path) -> None:
    """Write the ordinary tokens of a BPETokenizer as a tiktoken rank file (specials are not kept)."""
    lines = [f"{base64.b64encode(token).decode()} {rank}" for rank, token in enumerate(_ordinary_tokens(tokenizer))]
    write_atomic(Path(path), "\n".join(lines) + "\n")


def write_gpt2_files(tokenizer, encoder_json, vocab_bpe) -> None:
    """Write a BPETokenizer as OpenAI's encoder.json and vocab.bpe (special tokens go to encoder.json)."""
    byte_to_char = bytes_to_unicode()
    spelled = ["".join(byte_to_char[b] for b in token) for token in _ordinary_tokens(tokenizer)]
    encoder = {text: i for i, text in enumerate(spelled)}
    encoder.update(tokenizer.special_tokens)
    merges = [f"{spelled[left]} {spelled[right]}" for left, right in tokenizer.merges]
    write_atomic(Path(encoder_json), json.dumps(encoder, ensure_ascii=False))
    write_atomic(Path(vocab_bpe), "\n".join(["#version: 0.2", *merges]) + "\n")
