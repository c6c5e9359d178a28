"""LinearGaussianSSM: SQUAREM against plain EM, to a tolerance and to the optimum.

Every problem is fitted from the same start (same seed) with plain EM at the former default
``tol=1e-6``, plain EM at ``tol=1e-8`` and SQUAREM at ``tol=1e-8`` (the defaults now), each
with ``max_iter`` capped at ``--cap``; a SQUAREM run at ``tol=1e-12`` gives the reference
optimum. The table gives E-steps (passes over the data, the final evaluation included), the
median wall time over repeats, the final log-likelihood, its gap to the best one reached, and
whether the run converged and its history never decreased. A run that ends in an error (a
covariance driven to singular: one sequence with a free initial-state covariance, say) says
so.

Run:  python bench/bench_ssm_squarem.py [--repeats 3] [--cap 5000]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from emframe.models import LinearGaussianSSM

from emframe.datasets import load_nile, path


def local_level():
    _, flow = load_nile()
    kw = dict(transition_matrix_init=[[1.0]], observation_matrix_init=[[1.0]],
              initial_state_covariance_init=[[1e10]],
              freeze=("transition_matrix", "observation_matrix", "initial_state_covariance"),
              transition_offset=False, observation_offset=False)
    return "Nile local level (docs)", 1, kw, flow[:, None], None


def nile_free():
    _, flow = load_nile()
    kw = dict(initial_state_covariance_init=[[1e10]], freeze=("initial_state_covariance",))
    return "Nile, m=1, A, C, offsets free", 1, kw, flow[:, None], None


def airquality(m):
    # as ``emframe fit ssm example:airquality --state-dim m``: every column, NaN cells
    table = np.genfromtxt(path("airquality.csv"), delimiter=",", names=True)
    Y = np.column_stack([table[n] for n in table.dtype.names])
    return f"air quality (CLI: 6 cols, NaN), m={m}", m, {}, Y, None


def simulated(m, p, T, n_seq, missing, seed):
    rng = np.random.default_rng(seed)
    A = 0.9 * np.linalg.qr(rng.normal(size=(m, m)))[0]
    C = rng.normal(size=(p, m))
    Q = 0.1 * np.eye(m)
    R = 0.5 * np.eye(p)
    Ys = []
    for _ in range(n_seq):
        x = rng.normal(size=m)
        rows = []
        for _ in range(T):
            rows.append(C @ x + rng.multivariate_normal(np.zeros(p), R))
            x = A @ x + rng.multivariate_normal(np.zeros(m), Q)
        Ys.append(np.array(rows))
    Y = np.concatenate(Ys)
    Y[rng.random(Y.shape) < missing] = np.nan
    lengths = None if n_seq == 1 else [T] * n_seq
    name = f"simulated m={m}, p={p}, {n_seq}x{T}, {missing:.0%} missing"
    return name, m, {}, Y, lengths


def problems():
    return [
        local_level(), nile_free(), airquality(1), airquality(2),
        simulated(1, 1, 500, 1, 0.0, 0), simulated(2, 3, 300, 4, 0.0, 1),
        simulated(3, 5, 400, 2, 0.2, 2), simulated(2, 2, 1000, 1, 0.0, 3),
    ]


def run(m, kw, Y, lengths, tol, cap, accelerate, repeats):
    times, est = [], None
    for _ in range(repeats):
        est = LinearGaussianSSM(m, tol=tol, max_iter=cap, random_state=0, **kw)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                est.fit(Y, lengths, accelerate=accelerate)
            except ValueError as exc:
                return dict(error=str(exc).split(":")[0])
        times.append(time.perf_counter() - t0)
    h = est.loglik_history_
    monotone = bool(np.all(np.diff(h) >= -1e-9 * np.maximum(1.0, np.abs(h[:-1]))))
    return dict(e=est.n_e_steps_, s=float(np.median(times)), ll=float(h[-1]),
                conv=est.converged_, mono=monotone,
                Q=float(est.transition_covariance_[0, 0]),
                R=float(est.observation_covariance_[0, 0]))


RUNS = [("plain, tol=1e-6", None, 1e-6), ("plain, tol=1e-8", None, 1e-8),
        ("SQUAREM, tol=1e-8", "squarem", 1e-8), ("SQUAREM, tol=1e-12", "squarem", 1e-12)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cap", type=int, default=5000)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print("| problem | run | E-steps | s | final loglik | gap to best | converged | monotone |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m, kw, Y, lengths in problems():
        rows = {label: run(m, kw, Y, lengths, tol, args.cap, acc, args.repeats)
                for label, acc, tol in RUNS}
        lls = [r["ll"] for r in rows.values() if "ll" in r]
        best = max(lls) if lls else float("nan")
        for label, r in rows.items():
            if "error" in r:
                print(f"| {name} | {label} | error: {r['error']} | | | | | |")
                continue
            print(f"| {name} | {label} | {r['e']} | {r['s']:.3f} | {r['ll']:.6f} | "
                  f"{best - r['ll']:.2e} | {r['conv']} | {r['mono']} |")
            if name.startswith("Nile local"):
                print(f"|  | Q = {r['Q']:.1f}, R = {r['R']:.1f} | | | | | | |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
