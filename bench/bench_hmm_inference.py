"""Benchmark of emframe.inference.hmm.recursions.

Shapes: (a) 100 sequences x 1,000 steps, K = 8; (b) one sequence of 100,000 steps, K = 8.
Prints the median (and minimum) wall time, measured with time.perf_counter over a few
repeats, for each available backend; numba's compilation is excluded by a warm-up call.

Run: python bench/bench_hmm_inference.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from emframe.inference.hmm import forward_backward, has_numba

REPEATS = 7


def _problem(n_seq: int, length: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    startprob = rng.dirichlet(np.ones(k))
    transmat = rng.dirichlet(np.ones(k), size=k)
    log_emission = rng.normal(-10.0, 5.0, size=(n_seq * length, k))
    lengths = np.full(n_seq, length)
    return np.log(startprob), np.log(transmat), log_emission, lengths


def _timings(args, backend: str) -> list[float]:
    forward_backward(*args, backend=backend)  # warm-up (numba compile / cache load)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        forward_backward(*args, backend=backend)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    shapes = {
        "(a) 100 x 1,000 steps, K=8": _problem(100, 1_000, 8),
        "(b) 1 x 100,000 steps, K=8": _problem(1, 100_000, 8),
    }
    backends = ["numpy"] + (["numba"] if has_numba() else [])
    for name, args in shapes.items():
        for backend in backends:
            times = _timings(args, backend)
            print(
                f"{name:28s} {backend:6s} median {statistics.median(times):.4f} s"
                f"  (min {min(times):.4f} s, {REPEATS} runs)"
            )
    if not has_numba():
        print("numba not installed: numba backend skipped")


if __name__ == "__main__":
    main()
