"""Every source file of the library stays short enough to read in one sitting."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nanograd", "gpt", "tokenizer")
MAX_LINES = 400


def test_no_source_file_exceeds_the_line_budget():
    counts = {}
    for package in PACKAGES:
        assert (ROOT / package).is_dir(), f"package folder not found: {ROOT / package}"
        for path in sorted((ROOT / package).rglob("*.py")):
            with open(path, "rb") as f:
                counts[path.relative_to(ROOT).as_posix()] = sum(1 for _ in f)
    over = {name: n for name, n in counts.items() if n > MAX_LINES}
    assert not over, f"files over {MAX_LINES} lines: " + ", ".join(f"{name} ({n} lines)" for name, n in over.items())
