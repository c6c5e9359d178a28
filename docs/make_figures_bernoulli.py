"""Make the figures of docs/bernoulli_mixture.md.

Run from the repository root::

    python docs/make_figures_bernoulli.py

Writes docs/images/bernoulli_components.png and docs/images/bernoulli_imputation.png.
The fits use the same settings and seeds as the code blocks of the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from emframe.models import BernoulliMixture

from emframe.datasets import load_digits_binary

OUT = Path(__file__).resolve().parent / "images"


def majority_labels(clusters: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Most frequent true label in each cluster (-1 for an empty cluster)."""
    out = np.full(k, -1)
    for c in range(k):
        members = labels[clusters == c]
        if members.size:
            out[c] = np.bincount(members).argmax()
    return out


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    X, y = load_digits_binary()
    rng = np.random.default_rng(1)
    hide = rng.random(X.shape) < 0.3
    X_hidden = np.where(hide, np.nan, X)

    settings = dict(n_components=10, n_init=3, random_state=0, tol=1e-4, max_iter=300)
    fits = {
        "all pixels observed": BernoulliMixture(**settings).fit(X),
        "30% of pixels hidden": BernoulliMixture(**settings).fit(X_hidden),
    }

    # Components as 8x8 images, ordered by the digit most of their members show.
    fig, axes = plt.subplots(2, 10, figsize=(11, 2.9))
    for row, (title, bm) in enumerate(fits.items()):
        data = X if row == 0 else X_hidden
        major = majority_labels(bm.predict(data), y, 10)
        order = np.lexsort((-bm.weights_, major))
        for col, k in enumerate(order):
            ax = axes[row, col]
            ax.imshow(bm.probs_[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"'{major[k]}' w={bm.weights_[k]:.2f}", fontsize=8)
        axes[row, 0].set_ylabel(title.replace(" ", "\n", 1), fontsize=8)
    fig.suptitle("BernoulliMixture on binarised digits: P(pixel = 1) in each component",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "bernoulli_components.png", dpi=110)
    plt.close(fig)

    # Hidden pixels filled in from the posterior: P(x_j = 1 | observed) = sum_k r_k p_kj.
    bm = fits["30% of pixels hidden"]
    filled = bm.predict_proba(X_hidden) @ bm.probs_
    picks = [int(np.flatnonzero(y == digit)[0]) for digit in range(10)]
    fig, axes = plt.subplots(3, 10, figsize=(11, 3.6))
    # Observed pixels in black and white, hidden ones in light blue.
    grey = np.repeat((1.0 - X)[:, :, None], 3, axis=2)
    shown = np.where(hide[:, :, None], [0.55, 0.75, 1.0], grey)
    completed = np.where(hide, filled, X)
    rows = [("original", X), ("30% hidden\n(blue)", shown),
            ("hidden filled\nwith P(1 | obs.)", completed)]
    for r, (name, img) in enumerate(rows):
        for c, i in enumerate(picks):
            ax = axes[r, c]
            pic = img[i].reshape(8, 8, 3) if img.ndim == 3 else img[i].reshape(8, 8)
            ax.imshow(pic, cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("Filling in hidden pixels from the fitted mixture", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "bernoulli_imputation.png", dpi=110)
    plt.close(fig)
    print("wrote", OUT / "bernoulli_components.png", "and", OUT / "bernoulli_imputation.png")


if __name__ == "__main__":
    main()
