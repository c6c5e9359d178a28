"""Test helper: HMM emissions named by kind, for tests parametrised over every emission."""

from emframe.models.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    MultinomialEmission,
    PoissonEmission,
)

COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]


def emission(kind):
    """The emission of ``kind``: "categorical" (4 symbols), "poisson", "poisson-prior"
    (with a Gamma prior), "multinomial" (counts of 3 categories, rows of any total), a
    covariance type (Gaussian) or "gmm-" and a covariance type (2 components per state)."""
    if kind == "categorical":
        return CategoricalEmission(4)
    if kind == "poisson":
        return PoissonEmission()
    if kind == "poisson-prior":
        return PoissonEmission(lambdas_prior=2.0, lambdas_weight=0.5)
    if kind == "multinomial":
        return MultinomialEmission()
    if kind.startswith("gmm-"):
        return GMMEmission(2, kind[4:])
    return GaussianEmission(kind)
