"""Make the figure of docs/hmm_extensions.md.

Run from the repository root::

    python docs/make_figures_hmm_extensions.py

Writes docs/images/hmm_airquality.png: the daily air-quality series of New York, summer
1973, with the regimes decoded by a two-state Gaussian HMM fitted with its missing
values, the missing ozone readings imputed (posterior median and a 90% band from
multiple imputation), and the regimes the complete-case fit decodes. The fits use the
same settings and seeds as the code blocks of the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from emframe.models import GaussianHMM

from emframe.datasets import load_airquality

OUT = Path(__file__).resolve().parent / "images"
SETTINGS = {"n_init": 4, "random_state": 0, "tol": 1e-6}


def fits() -> dict:
    data, _ = load_airquality()
    X = np.column_stack([np.log(data[:, 0]), data[:, 1:4]])
    gap = np.isnan(X)
    model = GaussianHMM(2, "full", **SETTINGS).fit(X)
    order = np.argsort(model.means_[:, 3])
    complete = ~gap.any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], complete.astype(int), [0]])))
    cc = GaussianHMM(2, "full", **SETTINGS).fit(X[complete], edges[1::2] - edges[::2])
    cc_order = np.argsort(cc.means_[:, 3])
    draws = model.sample_imputations(X, n_imputations=50, random_state=0)
    return {
        "data": data, "X": X, "gap": gap,
        "regime": np.argsort(order)[model.predict(X)],
        "cc_regime": np.argsort(cc_order)[cc.predict(X)],
        "ozone_draws": np.exp(draws[:, :, 0]),
    }


def _shade(ax, regime, colour, label):
    hot = np.flatnonzero(np.diff(np.concatenate([[0], regime, [0]])))
    for i, (a, b) in enumerate(zip(hot[::2], hot[1::2], strict=True)):
        ax.axvspan(a + 0.5, b + 0.5, color=colour, alpha=0.18, lw=0,
                   label=label if i == 0 else None)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    f = fits()
    data, gap, regime = f["data"], f["gap"], f["regime"]
    day = np.arange(1, len(data) + 1)
    fig, (top, mid, low) = plt.subplots(
        3, 1, figsize=(10, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 2, 0.8]}
    )
    _shade(top, regime, "#d95f02", "hot regime (fit with the gaps)")
    seen = ~gap[:, 0]
    top.plot(day[seen], data[seen, 0], "o", ms=3.5, color="black", label="ozone, observed")
    miss = ~seen
    draws = f["ozone_draws"][:, miss]
    med = np.median(draws, axis=0)
    lo, hi = np.percentile(draws, [5, 95], axis=0)
    top.errorbar(day[miss], med, yerr=[med - lo, hi - med], fmt="s", ms=3.5, color="#1b9e77",
                 ecolor="#1b9e77", elinewidth=1, capsize=0,
                 label="ozone, imputed: median and 90% of 50 draws")
    top.set_yscale("log")
    top.set_ylabel("ozone (ppb)")
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.suptitle("New York air quality, May-September 1973: a two-state Gaussian HMM "
                 "fitted with its missing values")

    _shade(mid, regime, "#d95f02", None)
    mid.plot(day, data[:, 3], color="0.3", lw=1)
    mid.set_ylabel("temperature (°F)")

    for row, reg in enumerate([regime, f["cc_regime"]]):
        low.scatter(day, np.full(len(day), row), c=np.where(reg == 1, "#d95f02", "#7570b3"),
                    s=9, marker="s")
    low.set_yticks([0, 1], ["fit with gaps", "complete-case fit"], fontsize=8)
    low.set_ylim(-0.7, 1.7)
    low.set_xlabel("day (1 = May 1)")
    low.set_title("decoded regimes (orange: hot, purple: cool)", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "hmm_airquality.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
