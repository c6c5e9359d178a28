"""Make the figure of docs/state_space.md.

Run from the repository root::

    python docs/make_figures_ssm.py

Writes docs/images/ssm_nile.png: (top) the Nile's annual flow with the smoothed level of a
local-level model fitted by EM and its ±2 sd band, and statsmodels' smoothed level when
statsmodels is installed; (bottom) the same model fitted with 1921-1940 held out, the
smoothed level through the gap and a ten-year forecast, with their bands. The fits use the
settings of the code blocks of the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from emframe.models import LinearGaussianSSM

from emframe.datasets import load_nile
from emframe.plotting import plot_smoothed_states

OUT = Path(__file__).resolve().parent / "images"


def local_level() -> LinearGaussianSSM:
    return LinearGaussianSSM(
        1, transition_matrix_init=[[1.0]], observation_matrix_init=[[1.0]],
        initial_state_covariance_init=[[1e10]],
        freeze=("transition_matrix", "observation_matrix", "initial_state_covariance"),
        transition_offset=False, observation_offset=False, tol=1e-10, max_iter=2000,
    )


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    years, flow = load_nile()
    Y = flow[:, None]
    fig = plt.figure(figsize=(9, 7))
    top, bottom = fig.subfigures(2, 1)

    level = local_level().fit(Y, accelerate="squarem")
    plot_smoothed_states(level, Y, signal=True, x=years, fig=top)
    ax = top.axes[0]
    try:
        from statsmodels.tsa.statespace.structural import UnobservedComponents
    except ImportError:
        UnobservedComponents = None
    if UnobservedComponents is not None:
        uc = UnobservedComponents(flow, "local level").fit(disp=False)
        ax.plot(years, uc.smoothed_state[0], color="C3", linestyle="--", linewidth=1.2,
                label="statsmodels UnobservedComponents")
    ax.set_ylabel("flow (10^8 m^3)")
    ax.set_title(f"local level by EM: level variance {level.transition_covariance_[0, 0]:.0f}, "
                 f"noise variance {level.observation_covariance_[0, 0]:.0f}", fontsize="medium")
    ax.legend(loc="upper right", fontsize="small")

    gap = (years >= 1921) & (years <= 1940)
    Y_gap = Y.copy()
    Y_gap[gap] = np.nan
    held = local_level().fit(Y_gap, accelerate="squarem")
    plot_smoothed_states(held, Y_gap, signal=True, x=years, fig=bottom)
    ax = bottom.axes[0]
    ax.plot(years[gap], flow[gap], linestyle="none", marker="o", markersize=4,
            markerfacecolor="none", color="0.4", label="held out (1921-1940)")
    h = 10
    means, covs = held.forecast(Y_gap, h)
    ahead = years[-1] + 1 + np.arange(h)
    sd = np.sqrt(covs[:, 0, 0])
    ax.plot(ahead, means[:, 0], color="C2", linewidth=1.8,
            label="forecast of the flow, ± 2 sd")
    ax.fill_between(ahead, means[:, 0] - 2 * sd, means[:, 0] + 2 * sd, color="C2", alpha=0.25,
                    linewidth=0)
    ax.set_ylabel("flow (10^8 m^3)")
    ax.set_title("1921-1940 missing: smoothed through the gap, and forecast 1971-1980",
                 fontsize="medium")
    ax.set_ylim(200, None)  # room for the legend below the data
    ax.legend(loc="lower left", fontsize="small", ncol=2)
    fig.savefig(OUT / "ssm_nile.png", dpi=110)
    print(f"wrote {OUT / 'ssm_nile.png'}")


if __name__ == "__main__":
    main()
