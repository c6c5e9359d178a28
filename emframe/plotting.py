"""Plots of fits and convergence (public path; see :mod:`emframe.interfaces.plotting`).

matplotlib is imported only when a plotting function is called.
"""

from emframe.interfaces.plotting import (
    ellipse_geometry,
    plot_bernoulli_components,
    plot_clusters,
    plot_convergence,
    plot_smoothed_states,
    plot_state_path,
)

__all__ = [
    "ellipse_geometry",
    "plot_bernoulli_components",
    "plot_clusters",
    "plot_convergence",
    "plot_smoothed_states",
    "plot_state_path",
]
