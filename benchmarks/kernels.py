"""Each numba kernel against its NumPy reference, and the experimental numba GEMM against BLAS (GPT shapes).

    python benchmarks/kernels.py [--quick] [--threads N]

Config a: B=12, T=64, C=128, H=4, vocab 65.  Config b: B=64, T=256, C=384, H=6, vocab 65.
--quick runs config a only. Each row times both sides back to back in this process (best of
alternating runs after a warm-up call that also compiles) and prints their ratio: the machine is
shared and noisy, so compare ratios from one run, not absolute times across runs.
Kernels are the `@fast_kernel` functions of nanograd/functional.py and nanograd/optim.py: `f.kernel`
(numba) is timed against `f.reference` (NumPy), both called directly. The GEMM is
benchmarks/gemm_experiment.py's `matmul_numba` (not used by the engine), checked against np.matmul first.
`run(quick, threads)` returns the rows as dicts in benchmarks/run.py's format (name, unit, ours,
peer, ratio = peer time / our time).
"""
import argparse
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nanograd  # noqa: E402
import nanograd.functional as F  # noqa: E402
from benchmarks.gemm_experiment import matmul_numba  # noqa: E402
from nanograd import kernels as K  # noqa: E402
from nanograd.optim import adamw_step  # noqa: E402

CONFIGS = {
    "a": dict(batch=12, block=64, n_embd=128, n_head=4, vocab=65, n_params=810_000),
    "b": dict(batch=64, block=256, n_embd=384, n_head=6, vocab=65, n_params=10_700_000),
}


def paired_best_times(ours, peer, args, budget_s):
    """Best wall times of ours(*args) and peer(*args), run alternately (after one warm-up call each,
    which also compiles) for about budget_s and at least 3 rounds, so both see the same machine."""
    ours(*args)
    peer(*args)
    ours_times, peer_times = [], []
    deadline = time.perf_counter() + budget_s
    while len(ours_times) < 3 or (time.perf_counter() < deadline and len(ours_times) < 200):
        for fn, times in ((ours, ours_times), (peer, peer_times)):
            start = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - start)
    return min(ours_times), min(peer_times)


def kernel_cases(cfg, rng):
    """(name, shape text, @fast_kernel function, args) for every kernel at one GPT config."""
    B, T, C, H, V = cfg["batch"], cfg["block"], cfg["n_embd"], cfg["n_head"], cfg["vocab"]
    N, D = B * T, C // H

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    scores, dscores = randn(B * H * T, T), randn(B * H * T, T)
    logits, x, hidden = randn(N, V), randn(N, C), randn(N, 4 * C)
    targets = rng.integers(0, V, N)
    weight, bias = randn(C), randn(C)
    _, mean, rstd = F.layer_norm_forward.reference(x, weight, bias, 1e-5)
    q, k, v, dout = (randn(B, H, T, D) for _ in range(4))
    out, lse = F.attention_forward.reference(q, k, v, True)
    params = [randn(cfg["n_params"]) for _ in range(3)] + [np.abs(randn(cfg["n_params"]))]
    ids = rng.integers(0, V, (B, T))
    return [
        ("softmax_forward", f"({B * H * T},{T})", F.softmax_forward, (scores,)),
        ("softmax_backward", f"({B * H * T},{T})", F.softmax_backward,
         (F.softmax_forward.reference(scores), dscores)),
        ("log_softmax_forward", f"({N},{V})", F.log_softmax_forward, (logits,)),
        ("log_softmax_backward", f"({N},{V})", F.log_softmax_backward,
         (F.log_softmax_forward.reference(logits), randn(N, V))),
        ("gelu_forward", f"({N},{4 * C})", F.gelu_forward, (hidden,)),
        ("gelu_backward", f"({N},{4 * C})", F.gelu_backward, (hidden, randn(N, 4 * C))),
        ("layer_norm_forward", f"({N},{C})", F.layer_norm_forward, (x, weight, bias, 1e-5)),
        ("layer_norm_backward", f"({N},{C})", F.layer_norm_backward,
         (randn(N, C), x, weight, mean, rstd)),
        ("cross_entropy_forward", f"({N},{V})", F.cross_entropy_forward, (logits, targets, -1)),
        ("cross_entropy_backward", f"({N},{V})", F.cross_entropy_backward,
         (logits, targets, F.cross_entropy_forward.reference(logits, targets, -1)[1], -1, 1.0)),
        ("attention_forward", f"({B},{H},{T},{D}) causal", F.attention_forward, (q, k, v, True)),
        ("attention_backward", f"({B},{H},{T},{D}) causal", F.attention_backward,
         (dout, q, k, v, out, lse, True)),
        ("embedding_backward", f"ids ({B},{T}), C={C}", F.embedding_backward,
         (ids, randn(B, T, C), V)),
        ("adamw_step", f"{cfg['n_params']:,} params", adamw_step,
         (*params, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1)),
    ]


def matmul_cases(cfg, rng):
    """(shape text, a, b) for the GEMMs of one training step, forward and backward."""
    B, T, C, H, V = cfg["batch"], cfg["block"], cfg["n_embd"], cfg["n_head"], cfg["vocab"]
    N, D = B * T, C // H

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    cases = [(f"({N}x{C})@({C}x{n})", randn(N, C), randn(C, n)) for n in (3 * C, C, 4 * C, V)]
    cases.append((f"({N}x{4 * C})@({4 * C}x{C})", randn(N, 4 * C), randn(4 * C, C)))
    cases.append((f"({C}x{N})@({N}x{3 * C}) a=x.T view", randn(N, C).T, randn(N, 3 * C)))
    cases.append((f"({B * H}x{T}x{D})@({B * H}x{D}x{T}) batched", randn(B * H, T, D), randn(B * H, D, T)))
    return cases


def _row(kernel, config, shape, peer_name, ours_s, peer_s, **extra):
    """One result in benchmarks/run.py's format: times in ms, ratio = peer / ours (above 1: numba faster)."""
    return dict(name=f"{kernel} [{config}] {shape} vs {peer_name}", unit="ms", ours=ours_s * 1e3,
                peer=peer_s * 1e3, ratio=peer_s / ours_s, kernel=kernel, config=config, shape=shape,
                peer_name=peer_name, **extra)


def run(quick=False, threads=2):
    """Time every kernel at config a (and b unless quick); return one dict per row."""
    K.set_num_threads(threads)
    rng = np.random.default_rng(0)
    budget = 0.2 if quick else 0.5
    rows = []
    for config_name in ("a",) if quick else ("a", "b"):
        cfg = CONFIGS[config_name]
        for name, shape, op, args in kernel_cases(cfg, rng):
            numba_s, numpy_s = paired_best_times(op.kernel, op.reference, args, budget)
            rows.append(_row(name, config_name, shape, "numpy", numba_s, numpy_s))
        for shape, a, b in matmul_cases(cfg, rng):
            want = np.matmul(a, b)
            error = float(np.max(np.abs(matmul_numba(a, b) - want))) / max(1.0, float(np.max(np.abs(want))))
            if error > 1e-4:  # float32 sums of up to 16k terms in another order: ~1e-5 relative at most
                raise AssertionError(f"gemm_experiment.matmul_numba differs from np.matmul at {shape}: {error:.1e}")
            numba_s, blas_s = paired_best_times(matmul_numba, np.matmul, (a, b), budget)
            gflop = 2 * a.size * b.shape[-1] / 1e9
            rows.append(_row("matmul", config_name, shape, "BLAS", numba_s, blas_s,
                             ours_gflops=gflop / numba_s, peer_gflops=gflop / blas_s))
    return rows


def print_table(rows):
    print(f"{'kernel':<24}{'cfg':<4}{'shape':<40}{'ours ms':>10}{'peer ms':>10}  {'peer':<6}{'peer/ours':>10}")
    for row in rows:
        print(f"{row['kernel']:<24}{row['config']:<4}{row['shape']:<40}{row['ours']:>10.3f}"
              f"{row['peer']:>10.3f}  {row['peer_name']:<6}{row['ratio']:>9.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="config a only, shorter timing")
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    nanograd.set_num_threads(options.threads)
    print_table(run(quick=options.quick, threads=options.threads))
