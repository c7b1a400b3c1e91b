"""Character-level tokenizer: one id per distinct character, as in nanoGPT's shakespeare_char.

    tok = CharTokenizer().train(text)   # vocabulary: the sorted distinct characters of text
    ids = tok.encode("To be")           # an unseen character raises ValueError naming it
"""

import json

from .base import ModelReader, Tokenizer, render_token, unknown_id_error, utf8


class CharTokenizer(Tokenizer):
    """Ids are positions in `chars`, the sorted distinct characters seen by `train`."""

    kind = "char"

    def __init__(self, chars=()):
        self._set_chars(sorted(set(chars)))

    def _set_chars(self, chars: list[str]) -> None:
        for ch in chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"CharTokenizer characters must be 1-character strings, got {ch!r}")
            utf8(ch)
        self.chars = chars
        self.char_to_id = {ch: i for i, ch in enumerate(chars)}

    def train(self, text: str) -> "CharTokenizer":
        """Take the vocabulary from `text` (replacing any earlier one); return self for chaining."""
        utf8(text)
        self._set_chars(sorted(set(text)))
        return self

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        char_to_id = self.char_to_id
        try:
            return [char_to_id[ch] for ch in text]
        except KeyError as exc:
            ch = exc.args[0]
            raise ValueError(
                f"character {ch!r} (U+{ord(ch):04X}) at index {text.index(ch)} is not in the "
                f"vocabulary of {len(self.chars)} characters"
            ) from None

    def decode(self, ids) -> str:
        chars = self.chars
        try:
            if min(ids, default=0) >= 0:  # a negative index would silently wrap around
                return "".join([chars[i] for i in ids])
        except (IndexError, TypeError):
            pass
        raise unknown_id_error(ids, lambda i: 0 <= i < len(chars), f"this CharTokenizer has ids 0..{len(chars) - 1}")

    def _body_lines(self) -> list[str]:
        return [f"chars {len(self.chars)}"] + [json.dumps(ch, ensure_ascii=False) for ch in self.chars]

    def _vocab_lines(self) -> list[str]:
        return [f"[{render_token(ch.encode())}] {i}" for i, ch in enumerate(self.chars)]

    @classmethod
    def _from_body(cls, reader: ModelReader) -> "CharTokenizer":
        n_chars = reader.count("chars")
        chars = []
        for _ in range(n_chars):
            ch = reader.json_string(reader.next_line("a character as a JSON string"), "character")
            if len(ch) != 1:
                raise reader.error(f"expected exactly one character, got {ch!r}")
            if chars and ch <= chars[-1]:
                raise reader.error(f"characters must be sorted and distinct, {ch!r} follows {chars[-1]!r}")
            chars.append(ch)
        return cls(chars)
