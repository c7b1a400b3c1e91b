"""The benchmark suite: ours against the tool a user would otherwise pick, measured in the same run.

    python benchmarks/run.py [--quick] [--only NAME ...] [--threads N] [--json PATH]

Groups: training (train steps, KV-cache sampling, peak memory; PyTorch as the peer), kernels (each
numba kernel against its NumPy twin, matmul against BLAS), tokenizer (training time and encode/decode
speed; tiktoken and Hugging Face tokenizers as peers), scaleout (data-parallel training over MPI, N ranks x
1 thread against 1 process x N threads, N = --threads; needs `pip install -e ".[mpi]"`), lstm (a training step of
the LSTM language model against PyTorch's nn.LSTM on the same weights). Peers are optional
(`pip install -e ".[bench]"`): without them a row prints ours alone. The ratio column always reads "higher is
better for us".
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

GROUPS = ("training", "kernels", "tokenizer", "scaleout", "lstm")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes: a smoke run in a minute or two")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), help="run just these groups")
    parser.add_argument("--threads", type=int, default=2, help="threads for BLAS, numba and PyTorch alike (default 2)")
    parser.add_argument("--json", default="benchmarks/results.json", help="where to write the rows as JSON")
    return parser.parse_args()


def set_threads(n: int) -> None:
    # OpenBLAS and OpenMP read these when they load, so they must be set before NumPy is imported.
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)


def describe_machine() -> str:
    """What the figures depend on: CPU model, OpenBLAS's kernel family, threads, commit and date."""
    from nanograd.kernels import blas_kernel
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return (f"{cpu}, {os.cpu_count()} cores, OpenBLAS kernels {blas_kernel() or 'none'}; commit {commit}; "
            f"{time.strftime('%Y-%m-%d')}")


def format_value(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def print_table(rows) -> None:
    header = f"{'benchmark':<58} {'unit':<9} {'ours':>11} {'peer':>11} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "-"
        print(f"{row['name']:<58} {row['unit']:<9} {format_value(row['ours']):>11} "
              f"{format_value(row.get('peer')):>11} {ratio:>7}")


def main():
    args = parse_args()
    set_threads(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import importlib

    import nanograd
    nanograd.set_num_threads(args.threads)

    rows = []
    for group in args.only:
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{group}")
        if group == "tokenizer":
            group_rows = module.run(args.quick)
        else:
            group_rows = module.run(args.quick, args.threads)
        for row in group_rows:
            row["group"] = group
        rows += group_rows
        print(f"[{group}: {len(group_rows)} rows in {time.perf_counter() - start:.0f} s]", file=sys.stderr)

    machine = describe_machine()
    print(f"{machine}; {args.threads} threads")
    print_table(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"threads": args.threads, "quick": args.quick, "machine": machine,
                   "rows": rows}, f, indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
