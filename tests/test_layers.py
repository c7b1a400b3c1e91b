"""The project's layers, read from its imports: nothing imports a floor above its own, and no module reaches
itself through its imports (no import circles).

Floors, bottom up (a module may import its own floor and any below):
    0  nanograd/kernels/        plain array functions, no Tensor
    1  nanograd/, tokenizer/    the engine; the tokenizer beside it (neither imports the other's floor above)
    2  gpt/ model               model.py, lstm.py, checks.py, families.py, generate.py
    3  gpt/storage/             atomic writes, checkpoints, GPT-2 folders, figures
    4  gpt/train/               the trainer and what it needs
    5  gpt/finetune/            classifier and instruction tuning
    6  gpt/experiments/         the transfer experiments
    7  gpt's face and tools     gpt/__init__.py, attention_maps.py, sample.py, chat.py
    8  examples/, benchmarks/
Every import counts, also one inside a function: a late import hides an arrow, it does not remove it.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nanograd", "tokenizer", "gpt")
GPT_MODEL = {"gpt.model", "gpt.lstm", "gpt.checks", "gpt.families", "gpt.generate"}


def floor(module):
    """The floor of a module's dotted name (see the module docstring)."""
    top, _, rest = module.partition(".")
    if top == "nanograd":
        return 0 if rest == "kernels" or rest.startswith("kernels.") else 1
    if top == "tokenizer":
        return 1
    if top in ("examples", "benchmarks"):
        return 8
    if module in GPT_MODEL:
        return 2
    sub = rest.split(".")[0]
    return {"storage": 3, "train": 4, "finetune": 5, "experiments": 6}.get(sub, 7)


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files():
    for folder in (*PACKAGES, "examples", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))


MODULES = {module_name(p): p for p in project_files() if p.parts[-2] not in ("examples", "benchmarks")}


def resolve(name):
    """The project module an import names: `gpt.train.data` itself, or for `from gpt.train import Trainer`
    the package `gpt.train`; None for a module outside the project."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path):
    """The project modules `path` imports, each with the line that imports it."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg's face.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found += [(target, node.lineno) for target in map(resolve, names) if target and target != here]
    return sorted(dict(reversed(found)).items())  # each module once, at its first import


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_the_floors_cover_the_project():
    """Every package module is seen, so a new folder cannot slip past the rules."""
    assert {"gpt.model", "gpt.train.trainer", "nanograd.tensor", "nanograd.kernels.runtime", "tokenizer.bpe"} \
        <= set(MODULES)
    assert floor("gpt.train.loop") == 4 and floor("gpt.sample") == 7 and floor("nanograd.kernels") == 0


@pytest.mark.parametrize("path", list(project_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_a_floor_above_its_own(path):
    here = module_name(path) if path.parts[-2] not in ("examples", "benchmarks") else "examples"
    upward = [f"line {line}: {target} (floor {floor(target)})" for target, line in imports(path)
              if floor(target) > floor(here)]
    assert not upward, f"{path.relative_to(ROOT)} (floor {floor(here)}) imports from above: {upward}"


def test_the_model_reaches_kernels_only_through_the_engine():
    """gpt/ uses Tensor ops; which kernel runs is the engine's business."""
    direct = [(name, target) for name, targets in GRAPH.items() if name.startswith("gpt")
              for target, _ in targets if floor(target) == 0]
    assert not direct


def find_circles(graph):
    """Each import circle of `graph` ({module: [(imported module, line)]}) once, as a path back to its start."""
    circles, done = [], set()

    def visit(name, path):
        if name in path:
            circles.append(path[path.index(name):] + [name])
        elif name not in done:
            for target, _ in graph.get(name, ()):
                visit(target, path + [name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return circles


def test_no_import_circles():
    circles = find_circles(GRAPH)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_a_planted_circle_is_caught():
    """The check can fail: the model importing the trainer (which imports the model) is a circle."""
    planted = dict(GRAPH, **{"gpt.model": GRAPH["gpt.model"] + [("gpt.train.trainer", 1)]})
    assert any(c[0] == "gpt.model" and "gpt.train.trainer" in c for c in find_circles(planted))
