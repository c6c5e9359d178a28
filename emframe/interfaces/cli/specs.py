"""What the command line knows about each model, and its error type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROG = "emframe"
#: Cell texts read as a missing value (besides the empty cell).
MISSING = frozenset({"", "nan", "NaN", "NAN", "NA", "na"})


#: Parameter fields of the state-space model (``fit ssm --freeze/--init``), as
#: ``emframe.models.ssm.params.FIELDS``: written out so that building the parser
#: imports no model.
SSM_FIELDS = ("transition_matrix", "transition_offset", "transition_covariance",
              "observation_matrix", "observation_offset", "observation_covariance",
              "initial_state_mean", "initial_state_covariance")


class InputError(Exception):
    """Bad command-line usage or bad input data: exit status 2."""


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` in the number ``n`` asks for: "1 column", "2 columns"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


# -- models ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """How the command line builds, checks and describes one model."""

    name: str
    cls_name: str
    kind: str  # "mixture", "hmm", "gaussian" or "ssm"
    attributes: tuple[str, ...]
    values: str = "real"  # "real", "binary" or "counts"
    missing_ok: bool = False
    one_column: bool = False
    help: str = ""

    @property
    def sequential(self) -> bool:
        """Whether the model takes sequences (``--lengths``)."""
        return self.kind in ("hmm", "ssm")

    @property
    def estimator_class(self) -> type:
        from emframe import models

        try:
            return getattr(models, self.cls_name)
        except AttributeError:
            raise RuntimeError(
                f"model {self.name!r} needs emframe.models.{self.cls_name}, which this "
                "installation of emframe does not provide"
            ) from None


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("gmm", "GaussianMixture", "mixture", ("weights_", "means_", "covariances_"),
                  help="Gaussian mixture (clustering, density)"),
        ModelSpec("gmm-missing", "MissingDataGaussianMixture", "mixture",
                  ("weights_", "means_", "covariances_"), missing_ok=True,
                  help="Gaussian mixture on data with missing values (empty cells)"),
        ModelSpec("tmix", "StudentTMixture", "mixture",
                  ("weights_", "means_", "covariances_", "dof_"),
                  help="Student-t mixture: clusters robust to outliers"),
        ModelSpec("bernoulli", "BernoulliMixture", "mixture", ("weights_", "probs_"),
                  values="binary", missing_ok=True,
                  help="mixture of independent Bernoullis on 0/1 data (empty = missing)"),
        ModelSpec("gaussian-hmm", "GaussianHMM", "hmm",
                  ("startprob_", "transmat_", "means_", "covars_"), missing_ok=True,
                  help="hidden Markov model with Gaussian emissions (empty = missing)"),
        ModelSpec("categorical-hmm", "CategoricalHMM", "hmm",
                  ("startprob_", "transmat_", "emissionprob_"), values="counts",
                  one_column=True, help="hidden Markov model over symbols 0..S-1 (one column)"),
        ModelSpec("poisson-hmm", "PoissonHMM", "hmm", ("startprob_", "transmat_", "lambdas_"),
                  values="counts", missing_ok=True,
                  help="hidden Markov model with Poisson emissions (counts; empty = missing)"),
        ModelSpec("multinomial-hmm", "MultinomialHMM", "hmm",
                  ("startprob_", "transmat_", "emissionprob_"), values="counts",
                  help="hidden Markov model with multinomial emissions (each row counts the "
                       "trials of a step per category; rows may have different totals)"),
        ModelSpec("ar-hmm", "AutoRegressiveHMM", "hmm",
                  ("startprob_", "transmat_", "coefs_", "intercepts_", "covars_"),
                  help="hidden Markov model whose states are vector autoregressions of "
                       "order --order (default 1); the first --order rows of each sequence "
                       "are its lags and have no state"),
        ModelSpec("mvn-missing", "MissingDataGaussian", "gaussian", ("mean_", "covariance_"),
                  missing_ok=True, help="multivariate normal fitted to data with missing values"),
        ModelSpec("ssm", "LinearGaussianSSM", "ssm",
                  ("transition_matrix_", "transition_offset_", "transition_covariance_",
                   "observation_matrix_", "observation_offset_", "observation_covariance_",
                   "initial_state_mean_", "initial_state_covariance_"), missing_ok=True,
                  help="linear-Gaussian state-space model (Kalman smoother; empty cells are "
                  "missing)"),
    ]
}


def _spec_of(estimator: Any) -> ModelSpec | None:
    for spec in MODELS.values():
        if type(estimator).__name__ == spec.cls_name:
            return spec
    return None


