"""Benchmark of emframe.inference.kalman: filter and smoother throughput.

(a) Filter, filter + smoother, and the whole E-step (``expected_statistics``) on one
    sequence of T = 1,000,000 steps, state dimension 4, observation dimension 2, 5% of
    the entries missing; steps per second for each backend (the numpy reference runs
    once at this size, about a minute; numba's compilation is excluded by a warm-up).
(b) Against pykalman's ``KalmanFilter.filter`` and ``smooth`` at T = 10,000 without
    missing values: seconds and the ratio emframe / pykalman, in the same process.

Prints medians (and minima) of time.perf_counter and the load average.

Run: python bench/bench_kalman_filter.py [--numpy-steps N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from emframe.inference.kalman import (
    LinearGaussianSystem,
    expected_statistics,
    has_numba,
    kalman_filter,
    rts_smoother,
)

M, P = 4, 2


def _system(seed: int = 0) -> LinearGaussianSystem:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(M, M))
    A *= 0.95 / np.max(np.abs(np.linalg.eigvals(A)))
    W, V = rng.normal(size=(M, M)), rng.normal(size=(P, P))
    return LinearGaussianSystem(
        A=A, C=rng.normal(size=(P, M)), Q=W @ W.T / M + 0.1 * np.eye(M),
        R=V @ V.T / P + 0.1 * np.eye(P), mu0=np.zeros(M), S0=np.eye(M),
        b=rng.normal(size=M), d=rng.normal(size=P),
    )


def _sample(s: LinearGaussianSystem, T: int, missing: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Lq, Lr = np.linalg.cholesky(s.Q), np.linalg.cholesky(s.R)
    x = rng.multivariate_normal(s.mu0, s.S0)
    w = rng.normal(size=(T, M)) @ Lq.T
    Y = rng.normal(size=(T, P)) @ Lr.T + s.d
    for t in range(T):
        Y[t] += s.C @ x
        x = s.A @ x + s.b + w[t]
    Y[rng.random(Y.shape) < missing] = np.nan
    return Y


def _times(fn, repeats: int, *args, **kwargs) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        out.append(time.perf_counter() - t0)
    return out


def _report(name: str, times: list[float], steps: int) -> float:
    med = statistics.median(times)
    print(f"  {name:34s} median {med:9.4f} s (min {min(times):.4f}, {len(times)} runs)"
          f"  {steps / med:12,.0f} steps/s")
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numpy-steps", type=int, default=1_000_000,
                        help="T for the numpy reference in (a) (default 1e6)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    s = _system()
    T = 1_000_000
    Y = _sample(s, T, 0.05)
    backends = (["numba"] if has_numba() else []) + ["numpy"]
    print(f"(a) one sequence, T = {T:,}, m = {M}, p = {P}, 5% missing entries")
    for backend in backends:
        if backend == "numba":
            kalman_filter(Y[:100], s, backend=backend)  # warm-up: compile or load cache
            rts_smoother(Y[:100], s, backend=backend)
            Yb, repeats = Y, 5
        else:
            Yb, repeats = Y[: args.numpy_steps], 1
        n = len(Yb)
        for label, fn in [("filter", kalman_filter), ("filter + smoother", rts_smoother),
                          ("E-step (expected_statistics)", expected_statistics)]:
            _report(f"{backend:5s} {label}", _times(fn, repeats, Yb, s, backend=backend), n)
    if not has_numba():
        print("  numba not installed: numba backend skipped")

    print("(b) against pykalman, T = 10,000, no missing values")
    try:
        import pykalman
    except ImportError:
        print("  pykalman not installed: skipped")
        return
    Y4 = _sample(s, 10_000, 0.0)
    kf = pykalman.KalmanFilter(
        transition_matrices=s.A, observation_matrices=s.C, transition_covariance=s.Q,
        observation_covariance=s.R, transition_offsets=s.b, observation_offsets=s.d,
        initial_state_mean=s.mu0, initial_state_covariance=s.S0,
    )
    peer = {"filter": _times(kf.filter, 3, Y4), "filter + smoother": _times(kf.smooth, 3, Y4)}
    for name, times in peer.items():
        _report(f"pykalman {name}", times, len(Y4))
    for backend in backends:
        for name, fn in [("filter", kalman_filter), ("filter + smoother", rts_smoother)]:
            med = _report(f"{backend:5s} {name}", _times(fn, 5, Y4, s, backend=backend), len(Y4))
            print(f"    ratio emframe / pykalman = {med / statistics.median(peer[name]):.4f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
