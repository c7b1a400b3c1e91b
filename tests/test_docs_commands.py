"""Docs that cannot rot: every command README.md and docs/*.md show is run or checked, and README's python runs.

- Every line of a ```bash block (README.md, docs/*.md) is matched against HOW below, longest prefix first,
  and checked the way its row says. A command no row covers fails the test: a new command in the docs needs a
  decision here. Long runs are checked through `--help`, and every `--flag` the command uses must appear in
  that help, so renaming a module or a flag that the docs name fails here.
- Commands written inline in the prose (`python ...` in backticks) get the same flag check when a row covers
  them; an inline command with `...` in place of its script is left alone.
- Every ```python block of README.md (and of docs/*.md) runs, in a fresh namespace, in a temporary directory.
- Every file path the docs name in backticks (nanograd/..., gpt/..., examples/..., tests/...), every relative
  link, every name in README's map of the folders, and every flag the prose names must exist.
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Command prefix -> how it is checked:
#   "run"     run it as written (cheap), in a temporary directory;
#   "tiny"    run the script with --tiny (a seconds-long run), in a temporary directory;
#   "help"    run it with --help (a subcommand's own --help for python -m tokenizer); its flags must be in the help;
#   "extras"  not run (it installs): the extra named in .[...] must exist in pyproject.toml;
#   "suite"   not run (it is the whole test suite, this file included): tests/ must exist;
#   "collect" pytest on a named file: collected, not run (--collect-only); its env variables must appear in it;
#   "source"  not run (minutes, a profiler, or torch): the module must exist and run as a program; skipped
#             visibly where it imports torch and torch is missing.
HOW = {
    "pip install -e": "extras",
    "python -m pytest": "suite",
    "python -m pytest -s tests/": "collect",
    "python -c": "run",
    "python examples/backprop_tour.py": "run",
    "python examples/train_shakespeare.py": "help",  # 2000 steps: minutes
    "mpirun -n 2 python examples/train_shakespeare.py": "help",  # the launcher stripped: the script's help
    "python examples/finetune_classifier.py": "tiny",
    "python examples/finetune_instructions.py": "help",  # its --tiny run: tests/test_instruct_example.py
    "python examples/ulmfit_vs_gpt.py": "help",  # its --tiny run: tests/test_ulmfit_example.py
    "python examples/lstm_vs_gpt.py": "help",  # budgets of minutes
    "python examples/recipe_ablation.py": "tiny",
    "python -m gpt.train": "help",
    "python -m gpt.sample": "help",  # needs a trained checkpoint
    "python -m gpt.chat": "help",  # needs a trained checkpoint, reads stdin
    "python -m tokenizer train": "help",
    "python -m tokenizer encode": "help",
    "python -m tokenizer decode": "help",
    "python benchmarks/run.py": "help",  # minutes, and the peers
    "python -m benchmarks.torch_shakespeare": "source",  # minutes, and PyTorch
    "python -m benchmarks.profile": "source",  # runs under py-spy
    "python -m benchmarks.sliding_window_loss": "help",  # needs a trained checkpoint
    "python -m benchmarks.val_loss": "help",  # needs a trained checkpoint
}
LAUNCHERS = ("mpirun -n 2 ", "mpiexec -n 2 ")
ENV = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")


def _fenced(path: Path, lang: str):
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _commands(block: str):
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    text = block.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("  #")[0].split(" # ")[0].strip()
        if line and not line.startswith("#"):
            yield line


def _bash_commands():
    return [(path.relative_to(ROOT).as_posix(), cmd) for path in DOCS for block in _fenced(path, "bash")
            for cmd in _commands(block)]


def _inline_commands():
    found = []
    for path in DOCS:
        prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for span in re.findall(r"`([^`]+)`", prose):
            span = ENV.sub("", " ".join(span.split()))
            if span.startswith("python ") and not span.startswith("python ..."):
                found.append((path.relative_to(ROOT).as_posix(), span.split(" ...")[0]))
    return found


def _how(cmd: str):
    cmd = ENV.sub("", cmd)
    matches = [p for p in HOW if cmd == p or cmd.startswith(p + " ")]
    return (max(matches, key=len), HOW[max(matches, key=len)]) if matches else (None, None)


def _argv(cmd: str):
    cmd = ENV.sub("", cmd)
    for launcher in LAUNCHERS:
        cmd = cmd[len(launcher):] if cmd.startswith(launcher) else cmd
    return shlex.split(cmd.split(" > ")[0].split(" | ")[0])


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@lru_cache(maxsize=None)
def _help(program: tuple) -> str:
    done = subprocess.run([sys.executable, *program, "--help"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=_env())
    assert done.returncode == 0, f"{' '.join(program)} --help failed:\n{done.stderr[-2000:]}"
    return done.stdout


def _program(argv):
    """The part of argv that names the program: the script, or -m module (and a tokenizer subcommand)."""
    words = argv[1:]
    if words[0] == "-m":
        return tuple(words[:3]) if words[1] == "tokenizer" else tuple(words[:2])
    return (words[0],)


def _check_flags(cmd: str):
    argv = _argv(cmd)
    help_text = _help(_program(argv))
    flags = {w.split("=")[0] for w in argv if w.startswith("--")}
    missing = sorted(f for f in flags if not re.search(rf"{re.escape(f)}\b", help_text))
    assert not missing, f"`{cmd}`: {missing} not in its --help (renamed or removed?)"


def _run(argv, tmp_path, timeout=120):
    args = [str(ROOT / a) if a.endswith(".py") and (ROOT / a).is_file() else a for a in argv[1:]]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=_env())
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}"


def _check_module(cmd):
    module = _argv(cmd)[2]
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"`{cmd}`: no module {module} (renamed?)"
    source = Path(spec.origin).read_text()
    assert 'if __name__ == "__main__":' in source, f"`{cmd}`: {module} does not run as a program"
    if re.search(r"^import torch", source, flags=re.M):
        pytest.importorskip("torch", reason=f"`{cmd}` needs PyTorch (pip install -e \".[bench]\")")


def test_the_table_covers_every_command():
    commands = _bash_commands() + _inline_commands()
    assert len(_bash_commands()) > 10, "no bash blocks found: did README.md or docs/ move?"
    uncovered = [f"{where}: {cmd}" for where, cmd in _bash_commands() if _how(cmd)[1] is None]
    uncovered += [f"{where}: {cmd}" for where, cmd in _inline_commands() if _how(cmd)[1] is None]
    assert not uncovered, ("commands in the docs that HOW in tests/test_docs_commands.py does not cover; "
                           "add a row saying how each is checked:\n" + "\n".join(uncovered))
    assert commands


@pytest.mark.parametrize("where, cmd", sorted(set(_bash_commands())), ids=lambda v: v[:60])
def test_bash_command(where, cmd, tmp_path):
    prefix, how = _how(cmd)
    if how is None:
        pytest.fail(f"{where}: `{cmd}` is not covered by HOW")
    argv = _argv(cmd)
    if how == "extras":
        extra = re.search(r"\.\[(\w+)\]", cmd).group(1)
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert extra in extras, f"`{cmd}`: pyproject.toml has no extra {extra!r}"
    elif how == "suite":
        assert (ROOT / "tests").is_dir()
    elif how == "collect":
        test_file = next(w for w in argv if w.startswith("tests/"))
        source = (ROOT / test_file).read_text()
        for name in re.findall(r"([A-Z_][A-Z0-9_]*)=", cmd):
            assert name in source, f"`{cmd}`: {test_file} does not read {name}"
        keep = [w for w in argv[3:] if w != "-s"]
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                               *keep], capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env())
        assert done.returncode == 0, f"`{cmd}` collects nothing (pytest exit {done.returncode}):\n" \
                                     f"{done.stdout[-1500:]}{done.stderr[-1500:]}"
    elif how == "run":
        _run(argv, tmp_path)
    elif how == "tiny":
        _check_flags(cmd)
        _run(argv[:2] + ["--tiny", "--no-progress", "--threads", "1"], tmp_path)
    elif how == "help":
        _check_flags(cmd)
    elif how == "source":
        _check_module(cmd)


@pytest.mark.parametrize("where, cmd", sorted(set(_inline_commands())), ids=lambda v: v[:60])
def test_inline_command_flags(where, cmd):
    prefix, how = _how(cmd)
    if how is None:
        pytest.fail(f"{where}: `{cmd}` is not covered by HOW")
    if how in ("help", "tiny"):
        _check_flags(cmd)
    elif how == "source":
        _check_module(cmd)


@pytest.mark.parametrize("page", [p for p in DOCS if _fenced(p, "python")], ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    """README's python block (and any other page's), each in a fresh namespace."""
    monkeypatch.chdir(tmp_path)
    for block in _fenced(page, "python"):
        exec(compile(block, f"{page.name} (python block)", "exec"), {"__name__": "__docs__"})


def test_readme_has_a_python_block():
    assert _fenced(ROOT / "README.md", "python"), "README.md has no python block"


def test_paths_and_links_the_docs_name_exist():
    missing = []
    for path in DOCS:
        text = path.read_text()
        for name in re.findall(r"`((?:nanograd|gpt|tokenizer|examples|benchmarks|tests|docs)/[\w./-]*)`", text):
            name = name.rstrip(".")
            if "*" not in name and not (ROOT / name).exists():
                missing.append(f"{path.name}: `{name}`")
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in link and not (path.parent / link).exists():
                missing.append(f"{path.name}: link {link}")
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)


def test_flags_named_in_the_prose_exist():
    """A flag written in backticks anywhere in the docs (`--resume`, `--ranks`, ...) is some program's flag."""
    programs = {_program(_argv(cmd)) for _, cmd in _bash_commands() + _inline_commands()
                if _how(cmd)[1] in ("help", "tiny")}
    known = "\n".join(_help(program) for program in sorted(programs))
    missing = []
    for path in DOCS:
        prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for span in re.findall(r"`([^`]+)`", prose):
            for flag in (w.split("=")[0] for w in span.split() if w.startswith("--")):
                if not re.search(rf"{re.escape(flag)}\b", known):
                    missing.append(f"{path.name}: {flag}")
    assert not missing, "flags the docs name that no program has (renamed?):\n" + "\n".join(sorted(set(missing)))


def test_the_folder_map_names_files_that_exist():
    """README's map of the folders: each name in its first column (a top-level folder, or a file or folder
    of the last top-level one above it, indented) exists."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Folders", 1)[1]
    block = re.search(r"^```\n(.*?)^```", section, flags=re.S | re.M).group(1)
    top, missing = None, []
    for line in block.splitlines():
        first = re.split(r"\s{2,}", line.strip())[0]
        if not line.strip() or len(line) - len(line.lstrip()) > 2:  # blank, or a description's second line
            continue
        names = [n.strip() for n in first.split(",") if re.fullmatch(r"[\w.]+/?", n.strip())]
        if not line.startswith(" "):
            top = names[0] if names else top
            base = ROOT
        else:
            base = ROOT / top
        missing += [str((base / n).relative_to(ROOT)) for n in names if not (base / n).exists()]
    assert top, "README's map of the folders not found"
    assert not missing, "README's map of the folders names what does not exist: " + ", ".join(missing)
