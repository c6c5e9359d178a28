"""Benchmark: one EM iteration of a full-covariance Gaussian mixture, emframe vs scikit-learn.

n = 200,000 samples, d = 10 features, K = 8 components, 50 iterations with
tol = 0, float64, both estimators started from the same parameters
(weights_init / means_init / precisions_init) on the same data in the same
process. Prints the median seconds per iteration of each and their ratio, and
checks that both reach the same parameters.

Run from the repository root::

    python bench/bench_gmm.py [--n 200000] [--iters 50] [--repeats 1]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Seeded synthetic mixture: random means, random full covariances, offset from 0."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d)) + 10.0
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    labels = rng.integers(k, size=n)
    z = rng.normal(size=(n, d))
    return centres[labels] + np.einsum("nij,nj->ni", factors[labels], z)


def initial_params(X: np.ndarray, k: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Data-independent start: K random rows as means, equal weights, global precision."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], size=k, replace=False)]
    precision = np.linalg.inv(np.cov(X, rowvar=False))
    return {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": means,
        "precisions_init": np.repeat(precision[None], k, axis=0),
    }


def time_emframe(X: np.ndarray, k: int, iters: int, init: dict) -> tuple[np.ndarray, object]:
    from emframe.models import GaussianMixture

    stamps: list[float] = []

    def callback(info: object) -> None:
        stamps.append(time.perf_counter())

    gm = GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, **init)
    start = time.perf_counter()
    gm.fit(X, callbacks=[callback])
    return np.diff([start, *stamps]), gm


def time_sklearn(X: np.ndarray, k: int, iters: int, init: dict) -> tuple[np.ndarray, object]:
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, **init)
    stamps: list[float] = []
    m_step = gm._m_step  # time each E-step + M-step pair by stamping after every M-step

    def stamped_m_step(*args: object, **kwargs: object) -> None:
        m_step(*args, **kwargs)
        stamps.append(time.perf_counter())

    gm._m_step = stamped_m_step
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges
        gm.fit(X)
    return np.diff([start, *stamps]), gm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1, help="fits per library")
    args = parser.parse_args()

    import sklearn

    X = make_data(args.n, args.d, args.k)
    init = initial_params(X, args.k)
    em_times, sk_times = [], []
    for _ in range(args.repeats):
        t, em = time_emframe(X, args.k, args.iters, init)
        em_times.append(t)
        t, sk = time_sklearn(X, args.k, args.iters, init)
        sk_times.append(t)
    em_med = float(np.median(np.concatenate(em_times)))
    sk_med = float(np.median(np.concatenate(sk_times)))
    rel = max(
        float(np.max(np.abs(getattr(em, a) - getattr(sk, a))) / np.max(np.abs(getattr(sk, a))))
        for a in ("weights_", "means_", "covariances_")
    )
    print(f"GaussianMixture full covariance: n={args.n} d={args.d} K={args.k}, "
          f"{args.iters} iterations, tol=0, float64")
    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"Python {platform.python_version()}, {platform.machine()}")
    print(f"emframe  median {em_med:.4f} s/iter  (min {np.min(np.concatenate(em_times)):.4f})")
    print(f"sklearn  median {sk_med:.4f} s/iter  (min {np.min(np.concatenate(sk_times)):.4f})")
    print(f"speed-up (sklearn / emframe, medians): {sk_med / em_med:.1f}x")
    print(f"max relative parameter difference after {args.iters} iterations: {rel:.1e}")


if __name__ == "__main__":
    main()
