"""Online EM on a 10-million-row Gaussian-mixture stream that is never held in memory.

The stream is generated chunk by chunk from a seed, so it can be replayed
without being stored. Online EM (Cappé & Moulines 2009) makes one pass; batch EM
makes one pass per iteration over the same stream (its E-step runs chunk by
chunk too). Both are scored by the per-sample log-likelihood on the whole
stream. Peak memory is measured with tracemalloc (numpy reports its buffers to
it) for two batch sizes, to show it follows the batch size and not n.

Run:  python bench/bench_online_stream.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from emframe.models import GaussianMixture

MEANS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def make_stream(n_rows: int, chunk: int, seed: int = 0):
    def stream():
        rng = np.random.default_rng(seed)
        for start in range(0, n_rows, chunk):
            m = min(chunk, n_rows - start)
            z = rng.choice(3, size=m, p=WEIGHTS)
            yield MEANS[z] + rng.normal(size=(m, 3)) * np.array([1.0, 0.7, 1.3])

    return stream


def per_sample_loglik(est, stream) -> float:
    total, n = 0.0, 0
    for chunk in stream():
        total += est.log_likelihood(chunk)
        n += len(chunk)
    return total / n


def first_chunk(stream):
    return next(iter(stream()))


def timed(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    opts = parser.parse_args()
    n = opts.rows
    print(f"stream of {n:,} rows, 3 features, 3 components")
    results = {}
    for batch in (10_000, 100_000):
        stream = make_stream(n, batch)

        def online(stream=stream):
            est = GaussianMixture(3, random_state=0, max_iter=1)
            return est.fit(stream, method="online", kappa=0.6)

        est, secs, peak = timed(online)
        results[batch] = est
        print(f"online EM, batch {batch:>7,}: {secs:7.1f} s for one pass, "
              f"peak traced memory {peak:7.1f} MiB")

    stream = make_stream(n, 100_000)

    def batch_em():
        est = GaussianMixture(3, random_state=0, tol=1e-6, max_iter=200)
        return est.fit(stream)

    est_batch, secs, peak = timed(batch_em)
    print(f"batch EM (chunked): {secs:7.1f} s, {est_batch.n_iter_} iterations, "
          f"peak traced memory {peak:7.1f} MiB")
    ref = per_sample_loglik(est_batch, stream)
    print(f"per-sample log-likelihood, batch EM: {ref:.6f}")
    for batch, est in results.items():
        ll = per_sample_loglik(est, stream)
        print(f"per-sample log-likelihood, online (batch {batch:,}): {ll:.6f}  "
              f"relative gap {abs(ll - ref) / abs(ref):.2e}")
    print(f"memory of the whole data set, had it been held: {n * 3 * 8 / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
