"""SQUAREM against plain EM: E-steps and wall time to reach the same tolerance.

Each problem is fitted twice from the same starting point, once with plain EM
and once with ``accelerate="squarem"``, to the same per-sample tolerance. The
table gives passes over the data (E-steps, including the final evaluation),
the median wall time over repeats, and the final log-likelihoods.

Run:  python bench/bench_squarem.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from emframe.models import GaussianHMM, GaussianMixture, MissingDataGaussian

from emframe.datasets import load_old_faithful


def overlapping_mixture(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [1.0, 0.5], [0.5, 1.2]])
    labels = rng.integers(0, 3, n)
    return means[labels] + rng.normal(size=(n, 2))


def missing_heavy(n=5_000, d=8, rate=0.6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    X = rng.multivariate_normal(np.zeros(d), A @ A.T / d + 0.1 * np.eye(d), size=n)
    X[rng.random(X.shape) < rate] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    return X


def hmm_data(seed=0):
    rng = np.random.default_rng(seed)
    K, T = 3, 3000
    trans = np.array([[0.90, 0.05, 0.05], [0.05, 0.90, 0.05], [0.05, 0.05, 0.90]])
    z = np.zeros(T, int)
    for t in range(1, T):
        z[t] = rng.choice(K, p=trans[z[t - 1]])
    means = np.array([[0.0, 0.0], [0.8, 0.4], [0.2, 1.0]])
    return means[z] + rng.normal(size=(T, 2))


def problems():
    faithful = load_old_faithful()
    overlap = overlapping_mixture()
    miss = missing_heavy()
    seq = hmm_data()
    return [
        ("GMM, Old Faithful (K=2, full)",
         lambda: GaussianMixture(2, tol=1e-8, max_iter=10_000, init_params="random",
                                 random_state=3),
         (faithful,)),
        ("GMM, overlapping (n=20k, K=3, full)",
         lambda: GaussianMixture(3, tol=1e-8, max_iter=10_000, random_state=0),
         (overlap,)),
        ("GaussianHMM (T=3000, K=3, diag)",
         lambda: GaussianHMM(3, covariance_type="diag", tol=1e-8, max_iter=10_000,
                             random_state=0),
         (seq,)),
        ("MissingDataGaussian (n=5k, d=8, 60% missing)",
         lambda: MissingDataGaussian(tol=1e-10, max_iter=10_000),
         (miss,)),
    ]


def run(factory, args, accelerate, repeats):
    times = []
    for _ in range(repeats):
        est = factory()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est.fit(*args, accelerate=accelerate)
            times.append(time.perf_counter() - t0)
    return est, float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    print("| problem | plain EM: E-steps | SQUAREM: E-steps | E-step ratio | plain s | "
          "SQUAREM s | time ratio | final loglik plain | final loglik SQUAREM |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, factory, args in problems():
        plain, t_plain = run(factory, args, None, opts.repeats)
        fast, t_fast = run(factory, args, "squarem", opts.repeats)
        print(
            f"| {name} | {plain.n_e_steps_} | {fast.n_e_steps_} | "
            f"{plain.n_e_steps_ / fast.n_e_steps_:.1f}× | {t_plain:.3f} | {t_fast:.3f} | "
            f"{t_plain / t_fast:.1f}× | {plain.lower_bound_:.6f} | {fast.lower_bound_:.6f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
