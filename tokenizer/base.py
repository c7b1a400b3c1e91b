"""What every tokenizer shares: the encode/decode surface and the versioned `.model` file.

A `.model` file is UTF-8 text, one record per line, so it can be read and diffed by eye:

    nanograd-gpt tokenizer 1        <- magic and format version
    kind bpe                        <- which Tokenizer subclass the body belongs to
    ...                             <- the body, written and parsed by that subclass

Strings inside the body are JSON literals (quotes, escapes), which keeps newlines and odd
characters on one line. `load` checks every line and names the file and line of the first problem.
Next to it, `save` writes a `.vocab` file: one token per line, rendered printable, for humans only.
"""

import json
import operator
import os
import tempfile
import unicodedata
from pathlib import Path

FORMAT_MAGIC = "nanograd-gpt tokenizer"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A `.model` file that is corrupt, truncated or of the wrong kind."""


class ModelReader:
    """Hands out the lines of a `.model` file and words every complaint with the line number."""

    def __init__(self, path, text: str):
        self.path = str(path)
        self.size = len(text)
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()  # the newline that ends the last record
        self.line_no = 0  # 1-based number of the line last handed out

    def error(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path}, line {self.line_no}: {message}")

    def next_line(self, expected: str) -> str:
        if self.line_no >= len(self.lines):
            raise ModelFileError(
                f"{self.path}: file ends after line {self.line_no}, expected {expected} (truncated?)"
            )
        self.line_no += 1
        return self.lines[self.line_no - 1]

    def keyword(self, name: str) -> str:
        """Read a line `name VALUE` and return VALUE."""
        line = self.next_line(f"'{name} ...'")
        word, _, value = line.partition(" ")
        if word != name:
            raise self.error(f"expected '{name} ...', got {line[:60]!r}")
        return value

    def count(self, name: str) -> int:
        """Read a line `name N` (a record count) and return N."""
        return self.integer(self.keyword(name), f"the number after '{name}'", minimum=0)

    def integer(self, word: str, what: str, minimum: int | None = None) -> int:
        try:
            value = int(word)
        except ValueError:
            raise self.error(f"{what} should be an integer, got {word!r}") from None
        if minimum is not None and value < minimum:
            raise self.error(f"{what} should be >= {minimum}, got {value}")
        return value

    def json_string(self, literal: str, what: str) -> str:
        try:
            value = json.loads(literal)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise self.error(f"{what} should be a JSON string, got {literal[:60]!r}") from None
        if not isinstance(value, str):
            raise self.error(f"{what} should be a JSON string, got {literal[:60]!r}")
        try:
            utf8(value)
        except ValueError as exc:
            raise self.error(f"{what}: {exc}") from None
        return value

    def finish(self) -> None:
        if self.line_no < len(self.lines):
            self.line_no += 1
            raise self.error(f"unexpected extra line {self.lines[self.line_no - 1][:60]!r}")


def utf8(text: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (not encodable) raises ValueError naming its position."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise ValueError(
            f"text contains U+{ord(bad):04X} at index {exc.start}, a lone surrogate that UTF-8 "
            "cannot encode; fix the text (e.g. decode its bytes with errors='replace')"
        ) from None


def unknown_id_error(ids, is_known, vocabulary: str) -> ValueError:
    """The error for the first id in `ids` that is not an integer or fails `is_known(id)`."""
    for position, token_id in enumerate(ids):
        try:
            known = is_known(operator.index(token_id))
        except TypeError:
            known = False
        if not known:
            return ValueError(f"unknown token id {token_id!r} at position {position}: {vocabulary}")
    return ValueError(f"ids could not be decoded: {vocabulary}")


def render_token(token: bytes) -> str:
    """Printable form of a token for .vocab files: invalid UTF-8 and control characters escaped."""
    text = token.decode("utf-8", errors="replace")
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch).startswith("C") else ch for ch in text
    )


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and os.replace, so a reader, or a run
    that dies mid-write, never finds half a file. The one atomic writer of the tokenizer package."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a power cut never leaves the name with no content
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Tokenizer:
    """Base of all tokenizers: `encode`, `decode`, `vocab_size`, `save`, `load`.

    A subclass sets `kind` (the word in the file header) and implements `_body_lines`,
    `_vocab_lines` and `_from_body`; subclasses register themselves so `Tokenizer.load` can open
    any kind of `.model` file.
    """

    kind: str = ""
    _kinds: dict[str, type["Tokenizer"]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Tokenizer._kinds[cls.kind] = cls

    @property
    def vocab_size(self) -> int:
        """One more than the largest id this tokenizer can produce (an embedding table's rows)."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def _body_lines(self) -> list[str]:
        raise NotImplementedError

    def _vocab_lines(self) -> list[str]:
        raise NotImplementedError

    @classmethod
    def _from_body(cls, reader: ModelReader) -> "Tokenizer":
        raise NotImplementedError

    def save(self, prefix) -> Path:
        """Write PREFIX.model (what `load` reads) and PREFIX.vocab (for humans); return the .model path."""
        prefix = Path(prefix)
        model_path = prefix.with_name(prefix.name + ".model")
        header = [f"{FORMAT_MAGIC} {FORMAT_VERSION}", f"kind {self.kind}"]
        write_atomic(model_path, "\n".join(header + self._body_lines()) + "\n")
        write_atomic(prefix.with_name(prefix.name + ".vocab"), "\n".join(self._vocab_lines()) + "\n")
        return model_path

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a `.model` file written by `save`. On the base class, any kind; else only `cls.kind`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        reader = ModelReader(path, text)
        magic = reader.next_line(f"the header '{FORMAT_MAGIC} {FORMAT_VERSION}'")
        name, _, version = magic.rpartition(" ")
        if name != FORMAT_MAGIC:
            raise reader.error(f"not a tokenizer model: expected '{FORMAT_MAGIC} <version>'")
        if version != str(FORMAT_VERSION):
            raise reader.error(f"format version {version!r} is not supported (this code reads {FORMAT_VERSION})")
        kind = reader.keyword("kind")
        if kind not in Tokenizer._kinds:
            raise reader.error(f"unknown tokenizer kind {kind!r} (known: {', '.join(sorted(Tokenizer._kinds))})")
        klass = Tokenizer._kinds[kind]
        if cls is not Tokenizer and klass is not cls:
            raise reader.error(f"file holds a {kind!r} tokenizer, but {cls.__name__} reads {cls.kind!r}")
        tokenizer = klass._from_body(reader)
        reader.finish()
        return tokenizer
