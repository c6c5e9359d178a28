"""Draw the figure of docs/robust_mixtures.md into docs/images/ (run from the repository root).

    python docs/make_figures_robust.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from emframe.models import GaussianMixture, StudentTMixture  # noqa: E402

from emframe.datasets import load_old_faithful  # noqa: E402
from emframe.plotting import plot_clusters  # noqa: E402

OUT = Path(__file__).resolve().parent / "images"
NAMES = ("eruption (min)", "waiting (min)")

#: The twelve scattered outliers of docs/robust_mixtures.md.
OUTLIERS = np.array([
    [0.8, 100], [1.0, 35], [1.4, 118], [2.6, 112], [3.0, 30], [3.6, 22],
    [5.8, 38], [6.2, 116], [6.6, 62], [0.5, 72], [5.6, 108], [6.9, 88],
], dtype=float)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    clean = load_old_faithful()
    X = np.vstack([clean, OUTLIERS])
    gmm = GaussianMixture(2, random_state=0).fit(X)
    tmix = StudentTMixture(2, random_state=0).fit(X)
    noisy = GaussianMixture(2, noise=True, random_state=0).fit(X)
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.5), sharex=True, sharey=True)
    plot_clusters(gmm, X, ax=axes[0, 0], feature_names=NAMES)
    axes[0, 0].set_title("GaussianMixture: ellipses inflated by the outliers")
    plot_clusters(tmix, X, ax=axes[0, 1], feature_names=NAMES)
    axes[0, 1].set_title(f"StudentTMixture (dof {tmix.dof_[0]:.1f}, {tmix.dof_[1]:.1f}): "
                         "scale ellipses")
    plot_clusters(noisy, X, ax=axes[1, 0], feature_names=NAMES)
    axes[1, 0].set_title(f"GaussianMixture(noise=True): noise weight "
                         f"{noisy.noise_weight_:.3f} (grey)")
    ax = axes[1, 1]
    scores = tmix.outlier_scores(X)
    top = np.argsort(scores)[-12:]
    points = ax.scatter(X[:, 0], X[:, 1], c=scores, s=14, cmap="viridis")
    ax.scatter(X[top, 0], X[top, 1], s=90, facecolors="none", edgecolors="tab:red",
               linewidths=1.5, label="12 largest scores")
    fig.colorbar(points, ax=ax, label="outlier score  -log E[u | x]")
    ax.set_xlabel(NAMES[0])
    ax.set_title("StudentTMixture.outlier_scores")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "robust_faithful.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
