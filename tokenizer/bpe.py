"""Byte-level BPE tokenizer: train, encode, decode, special tokens, save and load.

Ids 0..255 are the 256 byte values (in the order `byte_ids` gives; identity for a trained
tokenizer, a permutation for GPT-2's files); merge k makes id 256 + k from a pair of earlier ids.
Special tokens take ids above the ordinary ones.

Encoding follows tiktoken exactly, so loaded GPT-2 or cl100k ranks give tiktoken's ids:
- the text is cut into chunks by the split pattern (pairs never cross chunks);
- a chunk that is itself a token becomes that token;
- otherwise the chunk starts as bytes, and the adjacent pair whose concatenation is the token of
  lowest id (rank) is merged, the leftmost on ties, until no adjacent pair forms a token.
"Forms a token" is judged on the concatenated bytes, as tiktoken does, not only on the recorded
merges: the pair table lists every split of every token into two tokens.
"""

import array
import json
from collections import Counter

import numpy as np
import regex

from . import interop
from .base import ModelReader, Tokenizer, render_token, unknown_id_error, utf8
from .gather import TokenTable
from .merge_kernel import PairTable
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from .progress import progress
from .train_fast import train_merges

IDENTITY_BYTES = list(range(256))
CACHE_MAX_CHUNK_CHARS = 256  # longer chunks are rare and would bloat the cache
CACHE_MAX_ENTRIES = 1 << 18  # cleared when over: bounded memory on endless streams of new text
ALLOWED_SPECIAL_MODES = ("all", "none", "none_raise")
MAX_TOKEN_BYTES_PER_FILE_BYTE = 64  # a trained vocabulary's tokens spell fewer bytes than its .model file has


def _as_id_array(ids) -> np.ndarray | None:
    """`ids` as a 1-D int64 array, or None if they are not all integers (2.5 must not become 2)."""
    if isinstance(ids, np.ndarray):
        return ids.astype(np.int64) if ids.ndim == 1 and ids.dtype.kind in "iu" else None
    try:
        return np.frombuffer(array.array("q", ids), dtype=np.int64)  # array() rejects non-integers
    except (TypeError, OverflowError):
        return None


class BPETokenizer(Tokenizer):
    """Byte-level BPE. `pattern=None` means no pre-splitting (the whole text is one chunk)."""

    kind = "bpe"

    def __init__(self, pattern: str | None = GPT4_SPLIT_PATTERN):
        try:
            self._split_regex = None if pattern is None else regex.compile(pattern)
        except regex.error as exc:
            raise ValueError(f"invalid split pattern {pattern!r}: {exc}") from None
        self.pattern = pattern
        self.byte_ids = IDENTITY_BYTES
        self.merges: list[tuple[int, int]] = []  # merges[k] made id 256 + k
        self.special_tokens: dict[str, int] = {}
        self._rebuild()

    @classmethod
    def _from_parts(cls, pattern, byte_ids, merges, special_tokens) -> "BPETokenizer":
        tokenizer = cls(pattern)
        tokenizer.byte_ids = list(byte_ids)
        tokenizer.merges = list(merges)
        tokenizer._rebuild()
        tokenizer.register_special_tokens(special_tokens)
        return tokenizer

    def _rebuild(self) -> None:
        """Derive the lookup tables from byte_ids, merges and special_tokens."""
        tokens = [b""] * 256
        for byte, token_id in enumerate(self.byte_ids):
            tokens[token_id] = bytes([byte])
        tokens += [b""] * len(self.merges)
        for k, (left, right) in enumerate(self.merges):
            tokens[256 + k] = tokens[left] + tokens[right]
        self._tokens = tokens
        self._byte_translation = bytes(self.byte_ids)  # byte value -> its id, for bytes.translate
        # Two merges may spell the same bytes; like tiktoken's rank table, the lowest id wins.
        self._token_ids: dict[bytes, int] = {}
        for token_id, token in enumerate(tokens):
            self._token_ids.setdefault(token, token_id)
        self._pair_table: PairTable | None = None  # built by the first encode
        self._cache: dict[str, list[int]] = {}
        self._rebuild_specials()

    def _rebuild_specials(self) -> None:
        """Derive the decoding tables, which hold the special tokens too."""
        self._decoder: list[bytes | None] = list(self._tokens)
        if self.special_tokens:
            self._decoder += [None] * (max(self.special_tokens.values()) + 1 - len(self._tokens))
            for name, token_id in self.special_tokens.items():
                self._decoder[token_id] = name.encode("utf-8")
        self._table = TokenTable(self._decoder)
        self._special_regexes: dict[frozenset[str], regex.Pattern] = {}

    def _pairs(self) -> PairTable:
        """Every split of every token into two tokens, with the token's rank: built on first use,
        since training and loading do not need it."""
        if self._pair_table is None:
            lefts, rights, ranks = [], [], []
            for token, token_id in self._token_ids.items():
                for cut in range(1, len(token)):
                    left, right = self._token_ids.get(token[:cut]), self._token_ids.get(token[cut:])
                    if left is not None and right is not None:
                        lefts.append(left)
                        rights.append(right)
                        ranks.append(token_id)
            self._pair_table = PairTable(lefts, rights, ranks)
        return self._pair_table

    # ----- vocabulary -----

    @property
    def vocab_size(self) -> int:
        return len(self._decoder)

    @property
    def vocab(self) -> dict[int, bytes]:
        """id -> bytes for every token, special tokens included."""
        return {i: token for i, token in enumerate(self._decoder) if token is not None}

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Add special tokens {string: id}; ids must lie above the ordinary ones and be unused."""
        merged = dict(self.special_tokens)
        for name, token_id in special_tokens.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a special token must be a non-empty string, got {name!r}")
            utf8(name)
            if not isinstance(token_id, int) or token_id < len(self._tokens):
                raise ValueError(
                    f"special token {name!r} has id {token_id!r}; ids 0..{len(self._tokens) - 1} "
                    "are ordinary tokens, so use an integer >= " + str(len(self._tokens))
                )
            merged[name] = token_id
        by_id = Counter(merged.values())
        clash = [name for name, token_id in merged.items() if by_id[token_id] > 1]
        if clash:
            raise ValueError(f"special tokens {clash} share an id")
        self.special_tokens = merged
        self._rebuild_specials()

    # ----- training -----

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> "BPETokenizer":
        """Learn vocab_size - 256 merges from `text` (fewer if it runs out of pairs); return self.

        Each step merges the most frequent adjacent pair within the pre-split chunks; equally
        frequent pairs go to the lowest (left id, right id) (see train_fast). Replaces earlier
        merges; byte ids become the identity. Special tokens already registered are kept and must
        have ids >= vocab_size. `verbose` shows progress (a bar on a terminal, else a line
        every so often: tokenizer/progress.py).
        """
        if not isinstance(vocab_size, int) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an integer >= 256 (the byte tokens), got {vocab_size!r}")
        clash = sorted(name for name, token_id in self.special_tokens.items() if token_id < vocab_size)
        if clash:
            raise ValueError(
                f"special tokens {clash} have ids below vocab_size={vocab_size}, where ordinary tokens "
                "will go; register them again with higher ids after training"
            )
        utf8(text)
        chunk_counts = Counter(self._split(text))
        byte_chunk_counts = {chunk.encode("utf-8"): count for chunk, count in chunk_counts.items()}
        with progress(vocab_size - 256, None if verbose else False, desc="merges", unit="merge") as bar:
            merges = train_merges(byte_chunk_counts, vocab_size - 256, progress=bar.update)
        self.byte_ids, self.merges = IDENTITY_BYTES, merges
        self._rebuild()
        return self

    # ----- encoding -----

    def _split(self, text: str) -> list[str]:
        if self._split_regex is None:
            return [text] if text else []
        return self._split_regex.findall(text)

    def _encode_new_chunks(self, chunks) -> dict[str, list[int]]:
        """Ids of each chunk: a chunk that is a token is that token; the rest go to the numba merger
        in one batch (see merge_kernel). Raises UnicodeEncodeError on a lone surrogate."""
        encoded, batch, batch_bytes = {}, [], []
        for chunk in chunks:
            data = chunk.encode("utf-8")
            whole = self._token_ids.get(data)
            if whole is not None:
                encoded[chunk] = [whole]
            else:
                batch.append(chunk)
                batch_bytes.append(data)
        if batch:
            starts = np.zeros(len(batch) + 1, dtype=np.int64)
            np.cumsum([len(data) for data in batch_bytes], out=starts[1:])
            byte_ids = np.frombuffer(b"".join(batch_bytes).translate(self._byte_translation), dtype=np.uint8)
            ids, offsets = self._pairs().merge_chunks(byte_ids, starts)
            offsets = offsets.tolist()
            for k, chunk in enumerate(batch):
                encoded[chunk] = ids[offsets[k] : offsets[k + 1]]
        return encoded

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` treating special-token strings as plain text."""
        chunks = self._split(text)
        cache = self._cache
        if len(cache) > CACHE_MAX_ENTRIES:
            cache.clear()
        uncacheable: dict[str, list[int]] = {}  # this text's chunks too long to keep
        missing = set(chunks).difference(cache)
        if missing:
            try:
                encoded = self._encode_new_chunks(missing)
            except UnicodeEncodeError:
                utf8(text)  # raises the error that names the character and its index
                raise
            for chunk, chunk_ids in encoded.items():
                (cache if len(chunk) <= CACHE_MAX_CHUNK_CHARS else uncacheable)[chunk] = chunk_ids
        ids: list[int] = []
        extend = ids.extend
        for chunk in chunks:
            extend(cache.get(chunk) or uncacheable[chunk])
        return ids

    def clear_cache(self) -> None:
        """Forget the chunk -> ids cache (to free its memory, or to time encoding from cold)."""
        self._cache.clear()

    def _special_regex(self, names) -> regex.Pattern:
        key = frozenset(names)
        if key not in self._special_regexes:
            longest_first = sorted(key, key=lambda name: (-len(name), name))
            self._special_regexes[key] = regex.compile("|".join(regex.escape(name) for name in longest_first))
        return self._special_regexes[key]

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Encode `text`, with tiktoken's rules for special-token strings found in it.

        allowed_special: "none_raise" (default) raises ValueError if any special-token string
        occurs; "none" encodes them as plain text (same as `encode_ordinary`); "all" encodes each as
        its special id; a set of names encodes those as special ids and raises on any other.
        """
        if isinstance(allowed_special, str):
            if allowed_special not in ALLOWED_SPECIAL_MODES:
                raise ValueError(
                    f"allowed_special must be one of {ALLOWED_SPECIAL_MODES} or a set of special "
                    f"tokens, got {allowed_special!r}"
                )
            if allowed_special == "none":
                return self.encode_ordinary(text)
            allowed = set(self.special_tokens) if allowed_special == "all" else set()
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special names unregistered special tokens {sorted(unknown)}")
        disallowed = set(self.special_tokens) - allowed
        if disallowed:
            found = self._special_regex(disallowed).search(text)
            if found:
                raise ValueError(
                    f"text contains the special token {found.group()!r} at index {found.start()}; "
                    "pass allowed_special='all' (or a set naming it) to encode it as a special "
                    "token, or allowed_special='none' / encode_ordinary to encode it as plain text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for found in self._special_regex(allowed).finditer(text):
            ids += self.encode_ordinary(text[start : found.start()])
            ids.append(self.special_tokens[found.group()])
            start = found.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    # ----- decoding -----

    def decode_bytes(self, ids) -> bytes:
        """The raw bytes of a sequence of ids; an unknown id raises ValueError naming it."""
        id_array = _as_id_array(ids)
        if id_array is None or not self._table.ids_are_known(id_array):
            raise unknown_id_error(
                ids, lambda i: 0 <= i < len(self._decoder) and self._decoder[i] is not None,
                f"this tokenizer has {len(self._tokens)} ordinary ids and specials "
                f"{sorted(self.special_tokens.values())}",
            )
        return self._table.gather(id_array)

    def decode(self, ids) -> str:
        """Text of a sequence of ids; bytes that are not valid UTF-8 become U+FFFD, as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ----- interoperability -----

    @classmethod
    def from_tiktoken(cls, path, pattern: str | None = GPT4_SPLIT_PATTERN, special_tokens=None) -> "BPETokenizer":
        """Load a tiktoken rank file (`<base64 token> <rank>` per line), e.g. cl100k_base.tiktoken."""
        byte_ids, merges = interop.merges_from_ranks(interop.read_tiktoken(path), str(path))
        return cls._from_parts(pattern, byte_ids, merges, special_tokens or {})

    @classmethod
    def from_gpt2_files(cls, encoder_json, vocab_bpe, pattern: str | None = None) -> "BPETokenizer":
        """Load OpenAI's original GPT-2 files; `pattern=None` selects GPT-2's split pattern."""
        byte_ids, merges, special_tokens = interop.read_gpt2_files(encoder_json, vocab_bpe)
        return cls._from_parts(pattern or GPT2_SPLIT_PATTERN, byte_ids, merges, special_tokens)

    # ----- files -----

    def _body_lines(self) -> list[str]:
        byte_line = "identity" if self.byte_ids == IDENTITY_BYTES else " ".join(map(str, self.byte_ids))
        lines = [f"pattern {json.dumps(self.pattern, ensure_ascii=False)}", f"bytes {byte_line}"]
        lines.append(f"special_tokens {len(self.special_tokens)}")
        lines += [f"{json.dumps(name, ensure_ascii=False)} {i}" for name, i in self.special_tokens.items()]
        lines.append(f"merges {len(self.merges)}")
        lines += [f"{left} {right}" for left, right in self.merges]
        return lines

    def _vocab_lines(self) -> list[str]:
        tokens = self._tokens
        lines = [f"[{render_token(tokens[i])}] {i}" for i in range(256)]
        for k, (left, right) in enumerate(self.merges):
            parts = "".join(f"[{render_token(tokens[i])}]" for i in (left, right))
            lines.append(f"{parts} -> [{render_token(tokens[256 + k])}] {256 + k}")
        lines += [f"special [{render_token(name.encode())}] {i}" for name, i in self.special_tokens.items()]
        return lines

    @classmethod
    def _from_body(cls, reader: ModelReader) -> "BPETokenizer":
        literal = reader.keyword("pattern")
        pattern = None if literal == "null" else reader.json_string(literal, "pattern")
        try:
            tokenizer = cls(pattern)
        except ValueError as exc:
            raise reader.error(str(exc)) from None
        byte_words = reader.keyword("bytes").split()
        if byte_words != ["identity"]:
            tokenizer.byte_ids = [reader.integer(word, "a byte id") for word in byte_words]
            if sorted(tokenizer.byte_ids) != IDENTITY_BYTES:
                raise reader.error("'bytes' must be 'identity' or a permutation of the ids 0..255")
        special_lines = []  # (line number, name, id): checked once the merges say where ordinary ids end
        for _ in range(reader.count("special_tokens")):
            literal, _, word = reader.next_line("a special token line").rpartition(" ")
            name = reader.json_string(literal, "special token")
            special_lines.append((reader.line_no, name, reader.integer(word, "special token id")))
        # Each merge line can double a token's length: 40 lines could spell a terabyte. The tokens' total
        # length is bounded by what the file could mean (a trained vocabulary spells less than its file).
        lengths, budget = [1] * 256, MAX_TOKEN_BYTES_PER_FILE_BYTE * reader.size + (1 << 24)
        for k in range(reader.count("merges")):
            words = reader.next_line(f"merge {k} of the 'merges' count").split(" ")
            if len(words) != 2:
                raise reader.error(f"a merge line is two ids 'LEFT RIGHT', got {' '.join(words)[:60]!r}")
            pair = tuple(reader.integer(word, "a merged id", minimum=0) for word in words)
            if max(pair) >= 256 + k:
                raise reader.error(f"merge {k} (id {256 + k}) uses id {max(pair)}, which does not exist yet")
            lengths.append(lengths[pair[0]] + lengths[pair[1]])
            budget -= lengths[-1]
            if budget < 0:
                raise reader.error(f"the merges spell tokens longer in total than a {reader.size:,}-byte file "
                                   "can justify (each merge doubling the last?)")
            tokenizer.merges.append(pair)
        tokenizer._rebuild()
        for line_no, name, token_id in special_lines:
            try:
                tokenizer.register_special_tokens({name: token_id})
            except ValueError as exc:
                reader.line_no = line_no
                raise reader.error(str(exc)) from None
        return tokenizer
