"""Draw the figures of docs/plotting.md and docs/cli.md into docs/images/ (run from the root).

    python docs/make_figures_plotting.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from emframe.models import BernoulliMixture, GaussianMixture, PoissonHMM  # noqa: E402

from emframe import plotting  # noqa: E402
from emframe.datasets import (  # noqa: E402
    coffee_path,
    load_digits_binary,
    load_earthquakes,
    load_old_faithful,
)
from emframe.interfaces.cli import main  # noqa: E402

OUT = Path(__file__).resolve().parent / "images"


def faithful() -> None:
    X = load_old_faithful()
    gmm = GaussianMixture(2, random_state=0).fit(X)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    plotting.plot_convergence(gmm, ax=left)
    plotting.plot_clusters(gmm, X, ax=right, feature_names=("eruption (min)", "waiting (min)"))
    fig.tight_layout()
    fig.savefig(OUT / "plot_faithful.png", dpi=110)
    plt.close(fig)


def digits() -> None:
    X, _ = load_digits_binary()
    bm = BernoulliMixture(10, n_init=3, random_state=0).fit(X)
    fig = plotting.plot_bernoulli_components(bm)
    fig.savefig(OUT / "plot_digits.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def quakes() -> None:
    years, counts = load_earthquakes()
    hmm = PoissonHMM(3, n_init=5, random_state=0).fit(counts[:, None])
    fig = plotting.plot_state_path(hmm, counts[:, None], x=years)
    fig.axes[0].set_ylabel("major earthquakes")
    fig.axes[1].set_xlabel("year")
    fig.savefig(OUT / "plot_quakes.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def coffee() -> None:
    """Before and after pictures of the segmentation by the command line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coffee_segmented.png"
        assert main(["segment", str(coffee_path()), "--components", "4", "--out", str(out),
                     "--quiet"]) == 0
        segmented = mpimg.imread(out)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.imshow(mpimg.imread(coffee_path()))
    a.set_title("coffee.png")
    b.imshow(segmented)
    b.set_title("emframe segment --components 4")
    for ax in (a, b):
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(OUT / "cli_coffee_before_after.png", dpi=80, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    faithful()
    digits()
    quakes()
    coffee()
