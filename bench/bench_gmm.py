"""Benchmark: Gaussian mixture EM, emframe vs scikit-learn (workload W1).

n = 200,000 samples, d = 10 features, K = 8 components, full covariances, seeded
synthetic data, both libraries in the same process on the same data. Four measurements:

1. one EM iteration: 50 iterations with tol = 0 from the same parameters
   (weights_init / means_init / precisions_init); each iteration is stamped (emframe
   by a callback, scikit-learn after each ``_m_step``). Median and minimum, wall clock
   and process CPU time, and the final parameters' agreement. With the default
   reg_covar = 1e-6 emframe's is a prior (``reg_covar / N_k`` added to a component's
   variances), scikit-learn's an addition of ``reg_covar``; they agree to rounding at
   reg_covar = 0, where this start lets a component collapse onto a few points, so the
   benchmark keeps the default. The collapsing component (weight ~3e-5 after 10-15
   iterations) then follows the two forms of regularisation apart (2e-2 relative in
   its covariance); the agreement over the other components is printed too;
2. the whole ``fit`` with the default initialisation (k-means), 10 iterations, tol = 0,
   validation and the final pass included;
3. the initialisation alone (emframe's ``initialize``; scikit-learn's
   ``_initialize_parameters``);
4. float32 data: emframe's iteration on float32 input (float64 arithmetic, the default;
   and float32 arithmetic, ``GaussianMixtureModel.float32_arithmetic``) against float64,
   over all iterations and over the first fifth (components still overlapping) and the
   rest apart, and the parameters' largest relative difference after the last one.

Run from the repository root (set OPENBLAS_NUM_THREADS=1 for one BLAS thread)::

    python bench/bench_gmm.py [--n 200000] [--iters 50] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
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


def blas_threads() -> str:
    """The BLAS thread setting, as threadpoolctl reports it (or the environment says)."""
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
                         if i.get("user_api") == "blas") or "unknown"
    except ImportError:
        return os.environ.get("OPENBLAS_NUM_THREADS", "default")


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class Stamps:
    """Wall and CPU time stamps; ``diffs()`` gives the per-interval times."""

    def __init__(self) -> None:
        self.wall = [time.perf_counter()]
        self.cpu = [time.process_time()]

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def diffs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.diff(self.wall), np.diff(self.cpu)


def time_emframe(X: np.ndarray, k: int, iters: int, init: dict, float32_arith: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, object]:
    from emframe.models import GaussianMixture
    from emframe.models.mixtures.gaussian import GaussianMixtureModel

    saved = GaussianMixtureModel.float32_arithmetic
    GaussianMixtureModel.float32_arithmetic = float32_arith  # forced either way
    try:
        gm = GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, **init)
        stamps = Stamps()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X, callbacks=[stamps])
    finally:
        GaussianMixtureModel.float32_arithmetic = saved
    wall, cpu = stamps.diffs()
    return wall, cpu, gm


def time_sklearn(X: np.ndarray, k: int, iters: int, init: dict
                 ) -> tuple[np.ndarray, np.ndarray, object]:
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, **init)
    m_step = gm._m_step  # time each E-step + M-step pair by stamping after every M-step

    def stamped_m_step(*args: object, **kwargs: object) -> None:
        m_step(*args, **kwargs)
        stamps()

    stamps = Stamps()
    gm._m_step = stamped_m_step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges
        gm.fit(X)
    wall, cpu = stamps.diffs()
    return wall, cpu, gm


def whole_fit(X: np.ndarray, k: int, iters: int, lib: str) -> tuple[float, float]:
    """Wall and CPU seconds of fit() with the default k-means initialisation."""
    if lib == "emframe":
        from emframe.models import GaussianMixture
    else:
        from sklearn.mixture import GaussianMixture
    gm = GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, random_state=0)
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return time.perf_counter() - t, time.process_time() - c


def init_time(X: np.ndarray, k: int, lib: str) -> tuple[float, float]:
    """Wall and CPU seconds of the default (k-means) initialisation alone."""
    t, c = time.perf_counter(), time.process_time()
    if lib == "emframe":
        from emframe.models.mixtures.gaussian import GaussianMixtureModel

        GaussianMixtureModel(k).initialize(X, np.random.default_rng(0))
    else:
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(k, random_state=0)
        gm._initialize_parameters(X, np.random.RandomState(0))
    return time.perf_counter() - t, time.process_time() - c


def fmt(wall: np.ndarray, cpu: np.ndarray) -> str:
    return (f"median {np.median(wall):.4f} s (min {np.min(wall):.4f}), "
            f"CPU median {np.median(cpu):.4f} s (min {np.min(cpu):.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1, help="fits per library")
    parser.add_argument("--fit-iters", type=int, default=10, help="iterations of the whole fit")
    parser.add_argument("--sections", default="1234",
                        help="which sections to run, e.g. 4 for the float32 one alone")
    args = parser.parse_args()

    import sklearn

    X = make_data(args.n, args.d, args.k)
    init = initial_params(X, args.k)
    print(f"GaussianMixture full covariance: n={args.n} d={args.d} K={args.k}, float64")
    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"Python {platform.python_version()}, {platform.machine()}, BLAS threads: "
          f"{blas_threads()}")
    print(load())

    if set(args.sections) & set("123"):
        sections_1_to_3(X, init, args)
    if "4" in args.sections:
        section_4(X, init, args)


def sections_1_to_3(X: np.ndarray, init: dict, args: argparse.Namespace) -> None:
    """Sections 1-3: an iteration, a whole fit and the initialisation against scikit-learn."""
    time_emframe(X[:2000], args.k, 2, initial_params(X[:2000], args.k))  # compile/load numba
    em_w, em_c, sk_w, sk_c = [], [], [], []
    for _ in range(args.repeats):
        w, c, em = time_emframe(X, args.k, args.iters, init)
        em_w.append(w)
        em_c.append(c)
        w, c, sk = time_sklearn(X, args.k, args.iters, init)
        sk_w.append(w)
        sk_c.append(c)
    em_w, em_c = np.concatenate(em_w), np.concatenate(em_c)
    sk_w, sk_c = np.concatenate(sk_w), np.concatenate(sk_c)
    def rel_diff(keep):
        return max(float(np.max(np.abs(getattr(em, a)[keep] - getattr(sk, a)[keep]))
                         / np.max(np.abs(getattr(sk, a)[keep])))
                   for a in ("weights_", "means_", "covariances_"))

    everything = np.ones(args.k, dtype=bool)
    alive = sk.weights_ > 1e-3  # a collapsing component follows reg_covar's form closely
    rel, rel_alive = rel_diff(everything), rel_diff(alive)
    print(f"\n1. one iteration ({args.iters} iterations, tol=0, same start)")
    print(f"   emframe  {fmt(em_w, em_c)}")
    print(f"   sklearn  {fmt(sk_w, sk_c)}")
    print(f"   ratio emframe / sklearn: medians {np.median(em_w) / np.median(sk_w):.3f}, "
          f"minima {np.min(em_w) / np.min(sk_w):.3f}, CPU medians "
          f"{np.median(em_c) / np.median(sk_c):.3f}")
    print(f"   max relative parameter difference after {args.iters} iterations: {rel:.1e}; "
          f"over the {int(alive.sum())} components of weight > 1e-3: {rel_alive:.1e}")
    print(f"   {load()}")

    print(f"\n2. whole fit, default k-means initialisation, {args.fit_iters} iterations")
    em_fit = [whole_fit(X, args.k, args.fit_iters, "emframe") for _ in range(args.repeats)]
    sk_fit = [whole_fit(X, args.k, args.fit_iters, "sklearn") for _ in range(args.repeats)]
    em_fw, sk_fw = np.median([f[0] for f in em_fit]), np.median([f[0] for f in sk_fit])
    em_fc, sk_fc = np.median([f[1] for f in em_fit]), np.median([f[1] for f in sk_fit])
    print(f"   emframe  {em_fw:.3f} s (CPU {em_fc:.3f})")
    print(f"   sklearn  {sk_fw:.3f} s (CPU {sk_fc:.3f})")
    print(f"   ratio emframe / sklearn: {em_fw / sk_fw:.3f} (CPU {em_fc / sk_fc:.3f})")

    print("\n3. initialisation alone (k-means)")
    em_i = [init_time(X, args.k, "emframe") for _ in range(max(3, args.repeats))]
    sk_i = [init_time(X, args.k, "sklearn") for _ in range(max(3, args.repeats))]
    em_iw, em_ic = np.median([t[0] for t in em_i]), np.median([t[1] for t in em_i])
    print(f"   emframe  {em_iw:.4f} s (CPU {em_ic:.4f}) = "
          f"{em_iw / np.median(em_w):.1f} EM iterations (CPU {em_ic / np.median(em_c):.1f})")
    print(f"   sklearn  {np.median([t[0] for t in sk_i]):.4f} s "
          f"(CPU {np.median([t[1] for t in sk_i]):.4f})")

def section_4(X: np.ndarray, init: dict, args: argparse.Namespace) -> None:
    """float32 input against the same numbers in float64; ``--repeats`` rounds, round robin."""
    print(f"\n4. float32 data (emframe; same numbers as float64; {args.repeats} round(s), "
          f"round robin, per-iteration medians over all rounds)")
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)
    init32 = {k: v.astype(np.float32) for k, v in init.items()}
    warm = min(args.n, 20_000)  # the compiled kernel's float32 variants, loaded once
    time_emframe(X32[:warm], args.k, 2, initial_params(X[:warm], args.k), float32_arith=True)
    time_emframe(X32[:warm], args.k, 2, initial_params(X[:warm], args.k))
    variants = {"float64 data      ": (X64, False), "float32, f64 arith": (X32, False),
                "float32, f32 arith": (X32, True)}
    runs: dict[str, list] = {label: [] for label in variants}
    for _ in range(args.repeats):
        for label, (data, f32) in variants.items():
            runs[label].append(time_emframe(data, args.k, args.iters, init32, float32_arith=f32))
    # per-iteration times of every round side by side: (rounds, iterations)
    merged = {label: (np.array([r[0] for r in rs]), np.array([r[1] for r in rs]), rs[-1][2])
              for label, rs in runs.items()}
    c64_all, fit64 = merged["float64 data      "][1], merged["float64 data      "][2]
    c64 = c64_all.ravel()
    for label, (w_all, c_all, f) in merged.items():
        w, c = w_all.ravel(), c_all.ravel()
        diff = max(float(np.max(np.abs(np.asarray(getattr(f, a), float) - getattr(fit64, a)))
                         / np.max(np.abs(getattr(fit64, a))))
                   for a in ("weights_", "means_", "covariances_"))
        half = max(2, c_all.shape[1] // 5)  # early iterations (overlapping components), rest
        early, late = c_all[:, 1:half].ravel(), c_all[:, half:].ravel()
        early64, late64 = c64_all[:, 1:half].ravel(), c64_all[:, half:].ravel()
        print(f"   {label} {fmt(w, c)}; speed-up (CPU medians) "
              f"{np.median(c64) / np.median(c):.2f}x (iterations 2-{half}: "
              f"{np.median(early64) / np.median(early):.2f}x, after: "
              f"{np.median(late64) / np.median(late):.2f}x; all {c_all.shape[1]} iterations' "
              f"total: {c64.sum() / c.sum():.2f}x); rel. param. diff "
              f"{diff:.1e}; dtype {f.means_.dtype}")
    print(f"   {load()}")


if __name__ == "__main__":
    main()
