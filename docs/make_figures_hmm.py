"""Make the figures of docs/hmm.md.

Run from the repository root::

    python docs/make_figures_hmm.py

Writes docs/images/hmm_earthquakes.png: the annual counts of major earthquakes with
the Viterbi-decoded rate of 2- and 3-state Poisson HMMs drawn over them. The fits use
the same settings and seeds as the code blocks of the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from emframe.models import PoissonHMM

from emframe.datasets import load_earthquakes

OUT = Path(__file__).resolve().parent / "images"


def fit(k: int, X: np.ndarray) -> PoissonHMM:
    return PoissonHMM(k, n_init=10, random_state=0, tol=1e-8, max_iter=1000).fit(X)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    years, counts = load_earthquakes()
    X = counts[:, None]
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True, sharey=True)
    colours = ["#1b9e77", "#d95f02", "#7570b3"]
    for ax, k in zip(axes, (2, 3), strict=True):
        model = fit(k, X)
        order = np.argsort(model.lambdas_[:, 0])  # states by increasing rate
        rank = np.empty(k, dtype=int)
        rank[order] = np.arange(k)
        states = rank[model.predict(X)]
        rates = model.lambdas_[order, 0]
        ax.plot(years, counts, color="0.55", lw=0.8, zorder=1)
        for s in range(k):
            sel = states == s
            ax.scatter(years[sel], counts[sel], s=16, color=colours[s], zorder=2,
                       label=f"state {s + 1}: rate {rates[s]:.1f}")
        ax.step(years, rates[states], where="mid", color="black", lw=1.6, zorder=3,
                label="decoded rate (Viterbi)")
        ax.set_title(f"{k}-state Poisson HMM, log-likelihood {model.score(X):.2f}")
        ax.set_ylabel("earthquakes per year")
        ax.set_ylim(0, 50)  # room for the legend above the data
        ax.legend(loc="upper left", fontsize=8, ncol=2, frameon=False)
    axes[-1].set_xlabel("year")
    fig.suptitle("Major earthquakes (magnitude 7 and above), 1900-2006")
    fig.tight_layout()
    fig.savefig(OUT / "hmm_earthquakes.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
