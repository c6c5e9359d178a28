"""Snapshot of HMM fits on complete data, taken before missing values and labels existed.

Run from the repository root, at the commit that predates them::

    python tests/data/hmm_reference/make_reference.py

tests/test_hmm_missing.py checks that today's code reproduces every number to 1e-14:
support for NaN entries and partial labels must leave complete, unlabelled data alone.

The Gaussian fits use ``reg_covar=0``: maximum likelihood, the same before and after
``reg_covar`` became the strength of a prior (it used to be added to the variances after
the M-step, now the M-step is the MAP estimate). The file was regenerated that way at the
commit that predates missing values (2583937), with that commit's
``GaussianMoments.nk_eff`` changed to today's floor (``max(nk, NK_EPS * total)`` instead
of ``nk + NK_EPS``), which moves tiny probabilities by ~1e-14 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "no_missing.npz"
LENGTHS = [30, 45, 25]
CASES = [
    ("gaussian-full", "GaussianHMM", {"covariance_type": "full", "reg_covar": 0.0}),
    ("gaussian-diag", "GaussianHMM", {"covariance_type": "diag", "reg_covar": 0.0}),
    ("gaussian-spherical", "GaussianHMM", {"covariance_type": "spherical", "reg_covar": 0.0}),
    ("gaussian-tied", "GaussianHMM", {"covariance_type": "tied", "reg_covar": 0.0}),
    ("gmm-diag", "GMMHMM", {"n_mix": 2, "covariance_type": "diag", "reg_covar": 0.0}),
    ("gmm-full", "GMMHMM", {"n_mix": 2, "covariance_type": "full", "reg_covar": 0.0}),
    ("poisson", "PoissonHMM", {}),
    ("categorical", "CategoricalHMM", {}),
]


def data(kind: str) -> np.ndarray:
    rng = np.random.default_rng(123)
    n = sum(LENGTHS)
    z = rng.integers(0, 3, n)
    if kind == "categorical":
        return np.choose(z, [rng.integers(0, 2, n), rng.integers(1, 4, n), rng.integers(2, 5, n)])[
            :, None
        ]
    if kind == "poisson":
        return rng.poisson(np.array([[1.0, 4.0], [6.0, 2.0], [12.0, 9.0]])[z])
    centres = np.array([[0.0, 0.0, 1.0], [3.0, 2.0, -1.0], [-2.0, 4.0, 0.0]])
    return centres[z] + rng.normal(size=(n, 3)) @ np.array(
        [[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.6]]
    )


def fit(name: str, cls_name: str, kwargs: dict):
    from emframe import models

    X = data(name.split("-")[0])
    model = getattr(models, cls_name)(
        3, **kwargs, n_init=1, max_iter=8, tol=0.0, random_state=7, backend="numpy"
    ).fit(X, LENGTHS)
    return X, model


def snapshot() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, cls_name, kwargs in CASES:
        X, model = fit(name, cls_name, kwargs)
        out[f"{name}/history"] = model.loglik_history_
        out[f"{name}/startprob"] = model.startprob_
        out[f"{name}/transmat"] = model.transmat_
        for field, value in vars(model.params_.emission).items():
            out[f"{name}/{field}"] = np.asarray(value)
        ll, post = model.score_samples(X, LENGTHS)
        out[f"{name}/score"] = np.array(ll)
        out[f"{name}/posteriors"] = post
        logprob, path = model.decode(X, LENGTHS)
        out[f"{name}/viterbi_logprob"] = np.array(logprob)
        out[f"{name}/viterbi"] = path
    return out


if __name__ == "__main__":
    np.savez_compressed(OUT, **snapshot())
    print(f"wrote {OUT}")
