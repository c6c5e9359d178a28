"""Benchmark of LinearGaussianSSM: EM per iteration against pykalman, and filter throughput.

(a) EM seconds per iteration (E-step + M-step) from the same start, state dimension 4,
    observation dimension 2, every parameter estimated except the offsets (pykalman's
    offsets stay fixed unless asked for):
    - one sequence of T = 10,000 steps;
    - 100 sequences of 100 steps: emframe fits them as 100 sequences (``lengths``);
      pykalman has no ``lengths``, so it runs on their concatenation (the same work).
    emframe's time per iteration is the median of the differences of the elapsed times
    reported to a callback; pykalman's is the median of ``em(Y, n_iter=1)`` calls.
(b) Filter throughput (``LinearGaussianSSM.score``, the log-likelihood by the Kalman filter)
    on one sequence of T = 1,000,000 steps, 5% of the entries missing, with and without
    numba (the numpy path runs once on ``--numpy-steps`` steps, default 1e6, about a
    minute); also EM per iteration at that length with numba.

Prints medians, the ratio emframe / pykalman measured in the same process, and the load
average at the start and the end.

Run: python bench/bench_ssm.py [--numpy-steps N] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from emframe.models import LinearGaussianSSM

from emframe.core.exceptions import ConvergenceWarning
from emframe.inference.kalman import has_numba

M, P = 4, 2
FIELDS = ("transition_matrix", "transition_offset", "transition_covariance",
          "observation_matrix", "observation_offset", "observation_covariance",
          "initial_state_mean", "initial_state_covariance")


def _params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(M, M))
    A *= 0.95 / np.max(np.abs(np.linalg.eigvals(A)))
    W, V = rng.normal(size=(M, M)), rng.normal(size=(P, P))
    return dict(transition_matrix=A, transition_offset=np.zeros(M),
                transition_covariance=W @ W.T / M + 0.1 * np.eye(M),
                observation_matrix=rng.normal(size=(P, M)), observation_offset=np.zeros(P),
                observation_covariance=V @ V.T / P + 0.1 * np.eye(P),
                initial_state_mean=np.zeros(M), initial_state_covariance=np.eye(M))


def _sample(p: dict[str, np.ndarray], T: int, missing: float, seed: int = 1) -> np.ndarray:
    est = LinearGaussianSSM(M, **{f"{k}_init": v for k, v in p.items()}, max_iter=0)
    est.fit(np.zeros((2, P)))
    Y, _ = est.sample(T, random_state=seed)
    Y[np.random.default_rng(seed).random(Y.shape) < missing] = np.nan
    return Y


def _emframe_per_iteration(Y, lengths, start, n_iter, backend="auto") -> float:
    stamps: list[float] = []
    est = LinearGaussianSSM(M, **{f"{k}_init": v for k, v in start.items()},
                            freeze=("transition_offset", "observation_offset"),
                            tol=0.0, max_iter=n_iter, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(Y, lengths, callbacks=[lambda info: stamps.append(info.elapsed)])
    return statistics.median(np.diff(stamps))


def _pykalman_per_iteration(pykalman, Y, start, repeats) -> float:
    kf = pykalman.KalmanFilter(
        transition_matrices=start["transition_matrix"],
        observation_matrices=start["observation_matrix"],
        transition_covariance=start["transition_covariance"],
        observation_covariance=start["observation_covariance"],
        transition_offsets=start["transition_offset"],
        observation_offsets=start["observation_offset"],
        initial_state_mean=start["initial_state_mean"],
        initial_state_covariance=start["initial_state_covariance"],
        em_vars=["transition_matrices", "observation_matrices", "transition_covariance",
                 "observation_covariance", "initial_state_mean", "initial_state_covariance"],
    )
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kf.em(Y, n_iter=1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numpy-steps", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5, help="pykalman iterations timed")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    print(f"numba installed: {has_numba()}")
    truth, start = _params(0), _params(1)
    _emframe_per_iteration(_sample(truth, 200, 0.0), None, start, 2)  # warm-up (numba cache)

    print(f"(a) EM per iteration, m = {M}, p = {P}, no missing values")
    try:
        import pykalman
    except ImportError:
        pykalman = None
        print("  pykalman not installed: no ratio")
    cases = [("one sequence, T = 10,000", _sample(truth, 10_000, 0.0), None)]
    panel = np.vstack([_sample(truth, 100, 0.0, seed=10 + i) for i in range(100)])
    cases.append(("100 sequences of 100 steps", panel, [100] * 100))
    for name, Y, lengths in cases:
        ours = _emframe_per_iteration(Y, lengths, start, 11)
        line = f"  {name:28s} emframe {ours:8.4f} s/iter"
        if pykalman is not None:
            peer = _pykalman_per_iteration(pykalman, Y, start, args.repeats)
            line += f"   pykalman {peer:8.4f} s/iter   ratio {ours / peer:.4f}"
        print(line)

    T = 1_000_000
    print(f"(b) filter throughput, one sequence, T = {T:,}, 5% missing entries")
    Y = _sample(truth, T, 0.05)
    est = LinearGaussianSSM(M, **{f"{k}_init": v for k, v in truth.items()}, max_iter=0)
    est.fit(Y[:10])
    backends = (["numba"] if has_numba() else []) + ["numpy"]
    for backend in backends:
        est.set_params(backend=backend)
        Yb = Y if backend == "numba" else Y[: args.numpy_steps]
        repeats = 5 if backend == "numba" else 1
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            est.score(Yb)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"  {backend:5s} filter  median {med:8.3f} s ({repeats} runs)  "
              f"{len(Yb) / med:12,.0f} steps/s")
    if has_numba():
        per_iter = _emframe_per_iteration(Y, None, start, 3)
        print(f"  numba EM per iteration at T = {T:,}: {per_iter:.3f} s")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
