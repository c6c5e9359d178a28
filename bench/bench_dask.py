"""Benchmark: GaussianMixture EM on a Dask LocalCluster against the in-memory fit of the same rows.

Full covariances, d = 10, K = 8, n = 20,000,000 rows (1.6 GB) generated on the workers
(each partition drawn from its own seed, never on the client), persisted once; then
``max_iter`` EM iterations with ``tol=0`` from the same explicit start. Printed:

- seconds per iteration on a local cluster of ``--workers`` worker processes (one thread
  each), median and minimum over the iterations after the first (the first one also
  generates and persists the data), and the CPU seconds per iteration of the workers and
  of the client process (which also runs the LocalCluster's scheduler);
- the same for the in-memory single-process fit of the same rows (generated in-process
  by the same per-partition generator; ``--mem-n`` uses fewer rows and scales the time
  by n / mem_n, when memory is short), and the ratio;
- the client process's peak resident memory (``ru_maxrss``) during the Dask fit, taken
  before the in-memory data exist; the scheduler of a LocalCluster runs in this process
  too, so it is included;
- the fixed overhead of one iteration (scheduler round trip): a tiny data set of 2,000
  rows in 2 and in 40 partitions, Dask against in-memory;
- the load average, since the machine is shared.

Run from the repository root (one BLAS thread per process, as the tests do)::

    OPENBLAS_NUM_THREADS=1 python bench/bench_dask.py [--n 20000000] [--iters 6]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np

D, K = 10, 8


def problem(d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Component centres (k, d) and covariance factors (k, d, d) of the synthetic mixture."""
    rng = np.random.default_rng(seed)
    return rng.normal(scale=4.0, size=(k, d)) + 10.0, rng.normal(size=(k, d, d)) / np.sqrt(d)


def make_block(n: int, index: int, seed: int, centres: np.ndarray, factors: np.ndarray
               ) -> np.ndarray:
    """Rows of partition ``index``: labels and noise drawn from the seed (seed, index)."""
    rng = np.random.default_rng([seed, index])
    labels = rng.integers(len(centres), size=n)
    out = rng.normal(size=(n, centres.shape[1]))
    for k in range(len(centres)):
        rows = labels == k
        out[rows] = out[rows] @ factors[k].T + centres[k]
    return out


def _block(block_info=None, *, seed, centres, factors):  # noqa: ANN001 - dask's hook
    info = block_info[None]
    n = info["chunk-shape"][0]
    return make_block(n, info["chunk-location"][0], seed, centres, factors)


def dask_data(n: int, chunk: int, seed: int, centres: np.ndarray, factors: np.ndarray):
    """A lazy Dask array whose partitions are generated on the workers."""
    import dask.array as da

    rows = (chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ())
    return da.map_blocks(_block, chunks=(rows, (centres.shape[1],)), dtype=np.float64,
                         meta=np.empty((0, 0)), seed=seed, centres=centres, factors=factors)


def memory_data(n: int, chunk: int, seed: int, centres: np.ndarray, factors: np.ndarray
                ) -> np.ndarray:
    """The same rows as :func:`dask_data`, generated in this process."""
    X = np.empty((n, centres.shape[1]))
    for i, start in enumerate(range(0, n, chunk)):
        stop = min(n, start + chunk)
        X[start:stop] = make_block(stop - start, i, seed, centres, factors)
    return X


def start(centres: np.ndarray, factors: np.ndarray, seed: int = 1) -> dict[str, np.ndarray]:
    """A data-independent start: perturbed centres, equal weights, unit precisions."""
    rng = np.random.default_rng(seed)
    k, d = centres.shape
    return {"weights_init": np.full(k, 1.0 / k),
            "means_init": centres + rng.normal(scale=1.0, size=centres.shape),
            "precisions_init": np.repeat(np.eye(d)[None], k, axis=0)}


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by the calling process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed_fit(X, iters: int, init: dict, client=None, **fit_kw):
    """Wall seconds of each iteration, CPU seconds per iteration after the first, the estimator.

    CPU time is read in the callbacks of iterations 1 and ``iters``: this process
    (client, and the scheduler of a LocalCluster) and, with ``client``, every worker
    process. On a shared machine it shows the work done, whatever the wall clock.
    """
    from emframe.models import GaussianMixture

    stamps: list[float] = []
    cpu: list[tuple[float, float]] = []

    def callback(info) -> None:
        stamps.append(time.perf_counter())
        if info.iteration in (1, iters):
            workers = sum(client.run(cpu_seconds).values()) if client is not None else 0.0
            cpu.append((cpu_seconds(), workers))
            stamps[-1] = time.perf_counter()  # the next iteration excludes this reading

    gm = GaussianMixture(K, covariance_type="full", tol=0.0, max_iter=iters, **init)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X, callbacks=[callback], **fit_kw)
    per_iter = [(b - a) / (iters - 1) for a, b in zip(cpu[0], cpu[-1], strict=True)]
    return np.diff([t0, *stamps]), per_iter, gm


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000_000)
    ap.add_argument("--chunk", type=int, default=500_000, help="rows per partition")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mem-n", type=int, default=None, help="rows for the in-memory fit")
    ap.add_argument("--tiny-iters", type=int, default=30)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    centres, factors = problem(D, K)
    init = start(centres, factors)
    print(f"load average before: {os.getloadavg()}")
    print(f"GaussianMixture full, d={D}, K={K}, n={args.n:,} rows in partitions of "
          f"{args.chunk:,}, {args.iters} iterations, tol=0")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        rss0 = peak_rss_mb()
        X = dask_data(args.n, args.chunk, 0, centres, factors)
        secs, (cpu_client, cpu_workers), gm_dask = timed_fit(X, args.iters, init, client)
        rss = peak_rss_mb()
        print(f"dask ({args.workers} workers): first iteration (generate + persist) "
              f"{secs[0]:.2f} s; then wall median {np.median(secs[1:]):.3f} s/iter, "
              f"min {secs[1:].min():.3f}; CPU {cpu_workers:.3f} s/iter in the workers, "
              f"{cpu_client:.3f} s/iter in the client+scheduler process")
        print(f"client peak RSS: {rss:.0f} MB (before the fit {rss0:.0f} MB)")
        tiny = {}
        small = memory_data(2_000, 1_000, 1, centres, factors)
        import dask.array as da

        for parts in (2, 40):
            t, _, _ = timed_fit(da.from_array(small, chunks=(2_000 // parts, -1)),
                                args.tiny_iters, init)
            tiny[parts] = float(np.median(t[1:]))
        client.close()
    t_mem, _, _ = timed_fit(small, args.tiny_iters, init)
    print(f"tiny data (2,000 rows): in-memory {np.median(t_mem[1:]) * 1e3:.2f} ms/iter; dask "
          + ", ".join(f"{p} partitions {s * 1e3:.1f} ms/iter" for p, s in tiny.items()))
    mem_n = args.mem_n or args.n
    Xm = memory_data(mem_n, args.chunk, 0, centres, factors)
    secs_m, (cpu_mem, _), gm_mem = timed_fit(Xm, args.iters, init)
    scale = args.n / mem_n
    med_m, min_m = np.median(secs_m[1:]) * scale, secs_m[1:].min() * scale
    note = f" (measured on {mem_n:,} rows, scaled by {scale:g})" if mem_n != args.n else ""
    print(f"in-memory (1 process): wall median {med_m:.3f} s/iter, min {min_m:.3f}; "
          f"CPU {cpu_mem * scale:.3f} s/iter{note}")
    print(f"dask / in-memory: wall {np.median(secs[1:]) / med_m:.2f}x (medians), "
          f"{secs[1:].min() / min_m:.2f}x (minima); CPU "
          f"{(cpu_workers + cpu_client) / (cpu_mem * scale):.2f}x (all processes)")
    if mem_n == args.n:
        diff = np.max(np.abs(gm_dask.means_ - gm_mem.means_) / np.abs(gm_mem.means_))
        print(f"means agree to {diff:.1e} relative")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
