"""Byte-level BPE tokenizer: train, encode, decode, special tokens, save and load.

Ids 0..255 are the 256 byte values (in the order `byte_ids` gives; identity for a trained
tokenizer, a permutation for GPT-2's files); merge k makes id 256 + k from a pair of earlier ids.
Special tokens take ids above the ordinary ones.

Encoding follows tiktoken exactly, so loaded GPT-2 or cl100k ranks give tiktoken's ids (the rule is in
reference.py, in plain Python). Two paths run it, tested equal: the compiled one (pretokenizer, encoder,
decoder, trainer: numba), the default, and the reference, when `compiled=False` or NANOGRAD_KERNELS=numpy.
"""

import array
import json
import os
from collections import Counter

import numpy as np
import regex

from . import interop, reference, trainer
from .base import ModelReader, Tokenizer, render_token, unknown_id_error, utf8
from .decoder import TokenTable
from .encoder import SCANNED, CompiledEncoder
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from .progress import progress

IDENTITY_BYTES = list(range(256))
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
    """Byte-level BPE. `pattern=None` means no pre-splitting (the whole text is one piece).

    compiled: run the numba path (True) or the plain-Python reference (False); None, the default, reads
    NANOGRAD_KERNELS (numpy means the reference). The attribute `compiled` can be changed at any time.
    """

    kind = "bpe"

    def __init__(self, pattern: str | None = GPT4_SPLIT_PATTERN, compiled: bool | None = None):
        self.compiled = os.environ.get("NANOGRAD_KERNELS", "numba") != "numpy" if compiled is None else compiled
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
        self._encoder: CompiledEncoder | None = None  # built by the first compiled encode
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
        frequent pairs go to the lowest (left id, right id) (see reference.train_merges). Replaces earlier
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
        data = utf8(text)
        if self.compiled and self.pattern in SCANNED:
            byte_chunk_counts = trainer.piece_counts(data, SCANNED[self.pattern])
        else:
            chunk_counts = Counter(reference.split(self._split_regex, text))
            byte_chunk_counts = {chunk.encode("utf-8"): count for chunk, count in chunk_counts.items()}
        train_merges = trainer.train_merges if self.compiled else reference.train_merges
        with progress(vocab_size - 256, None if verbose else False, desc="merges", unit="merge") as bar:
            merges = train_merges(byte_chunk_counts, vocab_size - 256, progress=bar.update)
        self.byte_ids, self.merges = IDENTITY_BYTES, merges
        self._rebuild()
        return self

    # ----- encoding -----

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` treating special-token strings as plain text."""
        data = utf8(text)  # a lone surrogate raises ValueError naming it
        if not self.compiled:
            return reference.encode_pieces(reference.split(self._split_regex, text), self._token_ids)
        if self._encoder is None:
            self._encoder = CompiledEncoder(self.pattern, self._split_regex, self._token_ids, self.byte_ids,
                                            self._table, len(self._tokens))
        return self._encoder.encode(data, text)

    def clear_cache(self) -> None:
        """Forget the compiled encoder's piece -> ids cache (to free its memory, or to time encoding from cold)."""
        if self._encoder is not None:
            self._encoder.cache.clear()

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

    def _known(self, token_id: int) -> bool:
        return 0 <= token_id < len(self._decoder) and self._decoder[token_id] is not None

    def decode_bytes(self, ids) -> bytes:
        """The raw bytes of a sequence of ids; an unknown id raises ValueError naming it."""
        if self.compiled:
            id_array = _as_id_array(ids)
            data = None if id_array is None else self._table.gather(id_array)
            if data is not None:
                return data
        elif all(isinstance(i, (int, np.integer)) and self._known(i) for i in ids):
            return reference.decode_bytes(ids, self._decoder)
        raise unknown_id_error(ids, self._known, f"this tokenizer has {len(self._tokens)} ordinary ids and "
                                                 f"specials {sorted(self.special_tokens.values())}")

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
