"""Draw the figures of docs/missing_data.md into docs/images/ (run from the repository root).

    python docs/make_figures_missing.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from emframe.models import MissingDataGaussian  # noqa: E402

from emframe.datasets import load_airquality  # noqa: E402
from emframe.plotting import plot_convergence  # noqa: E402

OUT = Path(__file__).resolve().parent / "images"


def convergence(X: np.ndarray) -> None:
    plain = MissingDataGaussian(tol=1e-12, max_iter=1000).fit(X)
    fast = MissingDataGaussian(tol=1e-12, max_iter=1000).fit(X, accelerate="squarem")
    best = max(plain.loglik_history_[-1], fast.loglik_history_[-1])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    plot_convergence(plain, ax=left)
    left.set_title("air quality: observed-data log-likelihood")
    for est, label in [(plain, "EM"), (fast, "EM + SQUAREM")]:
        gap = best - est.loglik_history_
        keep = gap > 0  # the last entries reach the maximum to machine precision
        right.semilogy(np.flatnonzero(keep), gap[keep], marker="o", markersize=3, label=label)
    right.set_xlabel("EM iteration")
    right.set_ylabel("distance to the maximum")
    right.set_title("linear convergence, and its acceleration")
    right.legend()
    fig.tight_layout()
    fig.savefig(OUT / "missing_convergence.png", dpi=110)
    plt.close(fig)


def imputations(X: np.ndarray) -> None:
    est = MissingDataGaussian().fit(X)
    imputed, std = est.impute(X, return_std=True)
    miss = np.isnan(X[:, 0])
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    ax.scatter(X[~miss, 3], X[~miss, 0], s=12, color="0.55", label="observed Ozone")
    ax.errorbar(X[miss, 3], imputed[miss, 0], yerr=std[miss, 0], fmt="o", markersize=4,
                color="tab:red", ecolor="tab:red", alpha=0.8, capsize=2,
                label="imputed Ozone ± 1 conditional sd")
    ax.set_xlabel("Temp (°F)")
    ax.set_ylabel("Ozone (ppb)")
    ax.set_title("conditional-mean imputation under the fitted normal")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT / "missing_imputations.png", dpi=110)
    plt.close(fig)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    data, _ = load_airquality()
    X = data[:, :4]  # Ozone, Solar.R, Wind, Temp
    convergence(X)
    imputations(X)


if __name__ == "__main__":
    main()
