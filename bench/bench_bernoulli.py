"""Benchmark: one EM iteration of BernoulliMixture at n = 1,000,000, d = 100, K = 20.

No library in the test environment fits a Bernoulli mixture (scikit-learn
declined one; pomegranate is not a dependency), so the yardstick is the closest
peer with the same cost structure: scikit-learn's ``GaussianMixture`` with
``covariance_type="diag"``, one E-step + M-step on the same 0/1 matrix, started
from the same weights, with means = probs and variances = p (1 - p). Its
iteration is timed through its ``_e_step`` / ``_m_step`` hooks (the body of its
fit loop), so set-up and the final E-step of ``fit`` are not counted.

emframe is timed the same way: ``model.e_step`` + ``model.m_step``, exactly what
the engine's loop runs, on data prepared once per fit by ``binary_data`` (with numba,
the first E-step also encodes the data for the lookup-table kernel; it is the warm-up).

Run::

    python bench/bench_bernoulli.py            # full size
    python bench/bench_bernoulli.py --n 100000 # quick

Prints the median (and minimum) seconds per iteration of each variant, and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from emframe.models.mixtures.bernoulli import BernoulliMixtureModel, binary_data


def median_time(fn, repeats: int) -> tuple[float, float, float]:
    """Median and minimum wall time and median CPU time of ``fn()``, after one warm-up."""
    fn()  # first touch of the temporaries' memory is slow on this VM; numba compiles
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), min(times), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--missing", type=float, default=0.1,
                    help="fraction of entries hidden for the missing-data run")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-peer", action="store_true", help="skip scikit-learn")
    args = ap.parse_args()
    n, d, K = args.n, args.d, args.k

    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.95, (K, d))
    X = np.empty((n, d))
    for start in range(0, n, 100_000):  # generate in slices to bound temporaries
        z = rng.integers(0, K, min(100_000, n - start))
        X[start:start + len(z)] = rng.random((len(z), d)) < truth[z]
    print(f"n={n} d={d} K={K}, float64 data {X.nbytes / 1e6:.0f} MB, {args.repeats} repeats")

    model = BernoulliMixtureModel(K, n_features=d)
    t = time.perf_counter()
    data = binary_data(X)
    t_prep = time.perf_counter() - t
    params = model.initialize(data, np.random.default_rng(1))

    def em_iter(dat):
        def run():
            stats, _ = model.e_step(params, dat)
            model.m_step(stats)
        return run

    t_full, m_full, c_full = median_time(em_iter(data), args.repeats)
    print(f"emframe BernoulliMixture, complete data : {t_full:.3f} s/iter (min {m_full:.3f}, "
          f"CPU {c_full:.3f}; binary_data once per fit: {t_prep:.3f} s)")

    t_peer = None
    if not args.no_peer:
        from sklearn.mixture import GaussianMixture

        p = np.asarray(params.probs)
        gm = GaussianMixture(K, covariance_type="diag", reg_covar=1e-6)
        cov = p * (1 - p) + gm.reg_covar
        gm.weights_ = np.asarray(params.weights).copy()
        gm.means_ = p.copy()
        gm.covariances_ = cov
        gm.precisions_cholesky_ = 1.0 / np.sqrt(cov)
        start_state = (gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_)

        def sk_iter():
            gm._set_parameters(start_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, log_resp = gm._e_step(X)
                gm._m_step(X, log_resp)

        t_peer, m_peer, c_peer = median_time(sk_iter, args.repeats)
        print(f"scikit-learn GaussianMixture(diag)     : {t_peer:.3f} s/iter (min {m_peer:.3f}, "
              f"CPU {c_peer:.3f})")
        print(f"ratio emframe / scikit-learn           : {t_full / t_peer:.2f} "
              f"(of minima {m_full / m_peer:.2f}, of CPU {c_full / c_peer:.2f})")

    # Missing entries: the observed mask adds two products per iteration.
    Xm = X  # reuse the buffer: the complete-data runs are done
    Xm[rng.random((n, d)) < args.missing] = np.nan
    t = time.perf_counter()
    data_m = binary_data(Xm)
    t_prep_m = time.perf_counter() - t
    del data
    t_miss, m_miss, c_miss = median_time(em_iter(data_m), args.repeats)
    print(f"emframe BernoulliMixture, {args.missing:.0%} missing  : {t_miss:.3f} s/iter "
          f"(min {m_miss:.3f}, CPU {c_miss:.3f}; binary_data once per fit: {t_prep_m:.3f} s)")
    print(f"ratio missing / complete               : {t_miss / t_full:.2f} "
          f"(of minima {m_miss / m_full:.2f})")
    print("load average (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()),
          "; OPENBLAS_NUM_THREADS =", os.environ.get("OPENBLAS_NUM_THREADS", "default"))


if __name__ == "__main__":
    main()
