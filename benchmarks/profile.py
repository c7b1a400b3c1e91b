"""Where a training step's time goes, by sampling the running process with py-spy (not by instrumenting it,
which would inflate the cost of every Python call).

    pip install py-spy
    py-spy record --native --format raw --rate 250 -o step.txt -- python -m benchmarks.profile run a 1
    python -m benchmarks.profile summarize step.txt

`run NAME THREADS [STEPS]` trains config NAME (see benchmarks/configs.py) for STEPS steps (default 50) after two
warm-up steps, which are not counted. `summarize` attributes every sample taken inside a training step to the innermost function of this
project on its stack, or to BLAS when the sample is inside it (`attention_backward` is the fused attention kernel,
`Tensor.backward` the graph walk itself, ...) and prints each one's share of the step.
"""
import collections
import re
import sys

STEP_FRAME = "run.<locals>.measured_step"
PROJECT_DIRS = ("nanograd/", "gpt/")
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def run(name: str, threads: int, steps: int) -> None:
    import nanograd
    from benchmarks.configs import CONFIGS, make_batch
    from benchmarks.training import our_step
    from gpt import GPT, GPTConfig

    nanograd.set_num_threads(threads)
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch(name)
    for _ in range(2):  # warm-up: numba compiles or loads its cache; not counted
        step(idx, targets)

    def measured_step():
        step(idx, targets)

    for _ in range(steps):
        measured_step()


def innermost_project_function(stack: list) -> str:
    """Where a sample of a stack (outermost first) is: inside BLAS (matrix products are NumPy's `@`, with no
    function of this project around them but the op that calls them), else the deepest frame of this
    project's code."""
    if any("openblas" in frame.lower() for frame in stack):
        return "BLAS matrix products (NumPy's @)"
    for frame in reversed(stack):
        match = FRAME.match(frame)
        if match and match["file"].startswith(PROJECT_DIRS):
            return f"{match['function']} ({match['file']})"
    return "(outside the project)"


def summarize(path: str, top: int = 25) -> None:
    samples = collections.Counter()
    with open(path) as raw:
        for line in raw:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            if any(frame.startswith(STEP_FRAME) for frame in frames):
                samples[innermost_project_function(frames)] += int(count)
    total = sum(samples.values())
    if not total:
        raise SystemExit(f"{path}: no samples inside a training step ({STEP_FRAME}); was it recorded from "
                         "`python -m benchmarks.profile run ...`?")
    print(f"{total} samples inside training steps")
    for function, count in samples.most_common(top):
        print(f"{100 * count / total:6.1f}%  {function}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) in (4, 5):
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) == 5 else 50)
    elif sys.argv[1:2] == ["summarize"] and len(sys.argv) == 3:
        summarize(sys.argv[2])
    else:
        raise SystemExit(__doc__)
