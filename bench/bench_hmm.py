"""Benchmark: diagonal GaussianHMM, K=8 states, d=4 features, 10 EM iterations, tol=0.

Two shapes of data: (a) 100 sequences x 1,000 steps, (b) 1 sequence x 100,000 steps.
Prints the median and minimum seconds per iteration, wall clock and process CPU time
(stamped after every M-step; and the whole fit divided by the iterations,
initialisation and final pass included) of emframe (numba and numpy backends) and of
hmmlearn (if installed), on the same data and from the same initial parameters, their
ratios, the load average and the BLAS thread setting. The "numba" case runs with the default
second thread (half of the E-step on a second core, the long sequence's backward halves or
one of two groups of the short sequences); both shapes are also timed on one thread
("numba, 1 thread", EMFRAME_HMM_THREADS=1). The CPU time is the process's
(both threads). The cases are timed round robin.
Run: ``python bench/bench_hmm.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from functools import partial

import numpy as np
from bench_gmm import blas_threads
from emframe.models import GaussianHMM

from emframe.inference.hmm import has_numba

K, D, N_ITER = 8, 4, 10


def make_data(n_seq: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample from a sticky 8-state diagonal Gaussian HMM."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(K, D))
    scales = rng.uniform(0.5, 1.5, size=(K, D))
    trans = np.full((K, K), 0.05 / (K - 1)) + np.eye(K) * (0.95 - 0.05 / (K - 1))
    X = np.empty((n_seq * length, D))
    for s in range(n_seq):
        z = np.empty(length, dtype=int)
        z[0] = rng.integers(K)
        u = rng.random(length)
        cdf = np.cumsum(trans, axis=1)
        for t in range(1, length):
            z[t] = np.searchsorted(cdf[z[t - 1]], u[t])
        X[s * length : (s + 1) * length] = means[z] + scales[z] * rng.normal(size=(length, D))
    return X, np.full(n_seq, length)


def initial_params(X: np.ndarray, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "startprob": np.full(K, 1.0 / K),
        "transmat": 0.5 * np.eye(K) + 0.5 * rng.dirichlet(np.ones(K), size=K),
        "means": X[rng.choice(X.shape[0], K, replace=False)],
        "covars": np.tile(X.var(axis=0), (K, 1)),
    }


def time_emframe(X, lengths, p, backend: str, two_threads: bool = True
                 ) -> tuple[float, float, float, float]:
    """(median seconds per iteration from per-iteration stamps, its CPU time, whole fit /
    N_ITER, loglik). ``two_threads``: the default second thread; else EMFRAME_HMM_THREADS=1."""
    wanted = "2" if two_threads else "1"
    if os.environ.get("EMFRAME_HMM_THREADS") != wanted:
        saved = os.environ.get("EMFRAME_HMM_THREADS")
        os.environ["EMFRAME_HMM_THREADS"] = wanted
        try:
            return time_emframe(X, lengths, p, backend, two_threads)
        finally:
            if saved is None:
                del os.environ["EMFRAME_HMM_THREADS"]
            else:
                os.environ["EMFRAME_HMM_THREADS"] = saved
    model = GaussianHMM(K, "diag", init_params="", tol=0.0, max_iter=N_ITER, reg_covar=0.0,
                        backend=backend)
    model.startprob_, model.transmat_ = p["startprob"], p["transmat"]
    model.means_, model.covars_ = p["means"], p["covars"]
    stamps, cpu = [], []

    def stamp(info):
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())

    t0 = time.perf_counter()
    model.fit(X, lengths, callbacks=[stamp])
    total = time.perf_counter() - t0
    return (float(np.median(np.diff(stamps))), float(np.median(np.diff(cpu))), total / N_ITER,
            float(model.loglik_history_[-1]))


def time_hmmlearn(X, lengths, p) -> tuple[float, float, float]:
    from hmmlearn.hmm import GaussianHMM as HL

    model = HL(K, "diag", init_params="", n_iter=N_ITER, tol=-np.inf, covars_prior=0.0,
               covars_weight=1.0, means_weight=0.0)
    model.startprob_, model.transmat_ = p["startprob"], p["transmat"]
    model.means_, model.covars_ = p["means"], p["covars"]
    stamps, cpu = [], []
    m_step = model._do_mstep

    def stamped(*a, **kw):
        m_step(*a, **kw)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())

    model._do_mstep = stamped
    t0 = time.perf_counter()
    model.fit(X, lengths)
    total = time.perf_counter() - t0
    return (float(np.median(np.diff(stamps))), float(np.median(np.diff(cpu))), total / N_ITER,
            float(model.score(X, lengths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    args = parser.parse_args()
    try:
        import hmmlearn  # noqa: F401

        peer = True
    except ImportError:
        peer = False
    backends = ["numba", "numpy"] if has_numba() else ["numpy"]
    shapes = {"(a) 100 x 1,000": (100, 1000), "(b) 1 x 100,000": (1, 100_000)}
    print(f"diag GaussianHMM K={K} d={D}, {N_ITER} iterations, tol=0; "
          f"median of {args.repeats} runs; per iteration = median of the per-iteration "
          f"stamps (wall clock and CPU); BLAS threads: {blas_threads()}")
    for name, (n_seq, length) in shapes.items():
        X, lengths = make_data(n_seq, length)
        p = initial_params(X)
        cases = {f"emframe[{b}]": partial(time_emframe, X, lengths, p, b) for b in backends}
        if "numba" in backends:
            cases["emframe[numba, 1 thread]"] = partial(time_emframe, X, lengths, p, "numba",
                                                        two_threads=False)
        if peer:
            cases["hmmlearn"] = partial(time_hmmlearn, X, lengths, p)
        for fn in cases.values():  # warm-up (numba compilation, caches, the worker thread)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn()
        runs = {label: [] for label in cases}
        for _ in range(args.repeats):  # round robin: every case sees the same load
            for label, fn in cases.items():
                # OpenBLAS's threads spin for about 0.1 s after a threaded call (the numpy
                # backend's): let them sleep before the next case
                time.sleep(0.3)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    runs[label].append(fn())
        results = {}
        for label, rows in runs.items():
            iters, cpus, fits = (np.array([r[i] for r in rows]) for i in range(3))
            results[label] = (float(np.median(iters)), float(np.min(iters)),
                              float(np.median(cpus)), float(np.median(fits)), rows[-1][3])
        print(f"\n{name}   (load average {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())})")
        ref = results.get("hmmlearn")
        for label, (t, tmin, tcpu, tfit, ll) in results.items():
            ratio = (f"\n{'':26s} ratio to hmmlearn: per iteration {t / ref[0]:.3f} (minima "
                     f"{tmin / ref[1]:.3f}, CPU {tcpu / ref[2]:.3f}), whole fit "
                     f"{tfit / ref[3]:.3f}") if ref else ""
            print(f"  {label:24s} {t * 1e3:8.2f} ms/iter (min {tmin * 1e3:.2f}, CPU "
                  f"{tcpu * 1e3:.2f}; whole fit / {N_ITER}: {tfit * 1e3:.2f})  final loglik "
                  f"{ll:.6f}{ratio}")


if __name__ == "__main__":
    main()
