"""Scaling of one GaussianMixture EM iteration with n, K and d, against scikit-learn.

Three sweeps of seconds per iteration (median and minimum over ``--iters`` iterations,
the first left out; wall clock and process CPU time; tol = 0, full covariances, the same
start for both libraries, run one after the other in the same process):

* n from 1e4 to 1e7 (d = 10, K = 8); past ``--memmap-from`` rows the data are a
  ``numpy.memmap`` on disk, generated chunk by chunk and streamed by emframe with
  ``chunk_size`` (scikit-learn is run only while the data fit in memory, up to 1e6);
* K from 2 to 64 (n = 1e5, d = 10);
* d from 2 to 100 (n = 1e5, K = 8).

Writes a Markdown table to stdout and the plot ``docs/images/gmm_scaling.png``.
Prints the load average and the BLAS thread setting.

Run from the repository root::

    python bench/bench_gmm_scaling.py [--iters 5] [--max-n 10000000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_gmm import blas_threads, load

ROOT = Path(__file__).resolve().parents[1]


def make_rows(n: int, d: int, k: int, seed: int, out: np.ndarray | None = None) -> np.ndarray:
    """Seeded mixture rows, written chunk by chunk (into ``out`` when given, e.g. a memmap)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d)) + 10.0
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    X = np.empty((n, d)) if out is None else out
    step = 250_000
    for s in range(0, n, step):
        m = min(step, n - s)
        lab = rng.integers(k, size=m)
        z = rng.normal(size=(m, d))
        X[s : s + m] = centres[lab] + np.einsum("nij,nj->ni", factors[lab], z)
    return X


def start(X: np.ndarray, k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    head = np.asarray(X[: min(len(X), 100_000)])
    means = head[rng.choice(len(head), size=k, replace=False)]
    prec = np.linalg.inv(np.cov(head, rowvar=False) + 1e-6 * np.eye(X.shape[1]))
    return {"weights_init": np.full(k, 1.0 / k), "means_init": means,
            "precisions_init": np.repeat(prec[None], k, axis=0)}


class Stamps:
    """Wall and CPU stamps; :meth:`summary` gives (median, minimum, CPU median) per interval."""

    def __init__(self) -> None:
        self.wall, self.cpu = [time.perf_counter()], [time.process_time()]

    def __call__(self, *args: object) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def summary(self) -> tuple[float, float, float]:
        w, c = np.diff(self.wall), np.diff(self.cpu)
        if len(w) > 1:  # the first iteration pays for first touches of memory
            w, c = w[1:], c[1:]
        return float(np.median(w)), float(np.min(w)), float(np.median(c))


def per_iter_emframe(X, k, iters, chunk_size=None) -> tuple[float, float, float]:
    from emframe.models import GaussianMixture

    stamps = Stamps()
    gm = GaussianMixture(k, tol=0.0, max_iter=iters, **start(X, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X, chunk_size=chunk_size, callbacks=[stamps])
    return stamps.summary()


def per_iter_sklearn(X, k, iters) -> tuple[float, float, float]:
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(k, tol=0.0, max_iter=iters, **start(X, k))
    stamps = Stamps()
    m_step = gm._m_step

    def stamped(*a, **kw):
        m_step(*a, **kw)
        stamps()

    gm._m_step = stamped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return stamps.summary()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--max-n", type=int, default=10_000_000)
    ap.add_argument("--memmap-from", type=int, default=2_000_000)
    ap.add_argument("--sklearn-max-n", type=int, default=1_000_000)
    ap.add_argument("--chunk-size", type=int, default=500_000)
    ap.add_argument("--plot", default=str(ROOT / "docs" / "images" / "gmm_scaling.png"))
    args = ap.parse_args()
    print(f"GaussianMixture scaling, full covariances, {args.iters} iterations per point, "
          f"BLAS threads: {blas_threads()}; {load()}")
    per_iter_emframe(make_rows(2000, 10, 8, 0), 8, 2)  # compile / load the kernels

    rows = []  # (sweep, value, emframe s/iter, sklearn s/iter or None)
    ns = [n for n in (10_000, 100_000, 1_000_000, 3_000_000, 10_000_000) if n <= args.max_n]
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            if n >= args.memmap_from:
                X = np.lib.format.open_memmap(os.path.join(tmp, f"X{n}.npy"), mode="w+",
                                              shape=(n, 10))
                make_rows(n, 10, 8, 0, out=X)
                X.flush()
                X = np.load(os.path.join(tmp, f"X{n}.npy"), mmap_mode="r")
                em = per_iter_emframe(X, 8, args.iters, chunk_size=args.chunk_size)
                del X
            else:
                X = make_rows(n, 10, 8, 0)
                em = per_iter_emframe(X, 8, args.iters)
            sk = per_iter_sklearn(X, 8, args.iters) if n <= args.sklearn_max_n else None
            rows.append(("n", n, em, sk))
            print(rows[-1], load(), flush=True)
    X = make_rows(100_000, 10, 64, 0)
    for k in (2, 4, 8, 16, 32, 64):
        em, sk = per_iter_emframe(X, k, args.iters), per_iter_sklearn(X, k, args.iters)
        rows.append(("K", k, em, sk))
        print(rows[-1], load(), flush=True)
    for d in (2, 5, 10, 20, 50, 100):
        X = make_rows(100_000, d, 8, 0)
        em, sk = per_iter_emframe(X, 8, args.iters), per_iter_sklearn(X, 8, args.iters)
        rows.append(("d", d, em, sk))
        print(rows[-1], load(), flush=True)

    print("\n| sweep | value | emframe s/iter, median (min), CPU | scikit-learn s/iter, "
          "median (min), CPU | ratio (medians; CPU) |")
    print("|---|---|---|---|---|")
    for sweep, v, em, sk in rows:
        emt = f"{em[0]:.4f} ({em[1]:.4f}), {em[2]:.4f}"
        skt = f"{sk[0]:.4f} ({sk[1]:.4f}), {sk[2]:.4f}" if sk is not None else "(not in memory)"
        ratio = f"{em[0] / sk[0]:.3f}; {em[2] / sk[2]:.3f}" if sk is not None else ""
        print(f"| {sweep} | {v:,} | {emt} | {skt} | {ratio} |")
    print(load(), "; BLAS threads:", blas_threads())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = {"n": "n (d = 10, K = 8)", "K": "K (n = 1e5, d = 10)", "d": "d (n = 1e5, K = 8)"}
    for ax, sweep in zip(axes, ("n", "K", "d"), strict=True):
        pts = [r for r in rows if r[0] == sweep]
        # CPU medians: on a shared machine the wall clock also counts the wait for a core
        ax.loglog([r[1] for r in pts], [r[2][2] for r in pts], "o-", label="emframe")
        sk = [r for r in pts if r[3] is not None]
        ax.loglog([r[1] for r in sk], [r[3][2] for r in sk], "s--", label="scikit-learn")
        ax.set_xticks([r[1] for r in pts])
        ax.set_xticklabels([f"{r[1]:.0e}" if sweep == "n" else str(r[1]) for r in pts])
        ax.minorticks_off()
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel("CPU seconds per EM iteration (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("memmap, streamed in chunks past 2e6 rows", fontsize=9)
    fig.suptitle(f"GaussianMixture, full covariances ({load()}, BLAS threads: "
                 f"{blas_threads()})", fontsize=10)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
