"""Maximum-likelihood mean and covariance of a multivariate normal from data with NaNs, by EM.

The E-step replaces each row's missing entries by their conditional mean given
its observed entries and adds their conditional covariance to the scatter
matrix; the M-step is the ordinary Gaussian one. The conditionals come from
:mod:`emframe.inference.gaussian.conditional`, which groups rows by missingness pattern and
factorises the missing blocks of the precision matrix in batches, so there is
no Python loop over rows or patterns.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emframe.core.estimator import EMEstimator
from emframe.core.executors import as_external, lazy_rows
from emframe.core.model import EMModel
from emframe.core.numerics import cholesky_lower, triangular_inverse
from emframe.core.params import Params, Stats
from emframe.core.row_random import row_normals, row_uniforms, stream_key
from emframe.core.validation import check_imputations_size, check_scalar
from emframe.inference.gaussian.conditional import (
    GaussianConditionals,
    conditional_gaussian,
    missing_patterns,
    observed_moments,
    weighted_scatter,
)

__all__ = [
    "MissingDataGaussian",
    "MissingGaussianModel",
    "MissingGaussianParams",
    "MissingGaussianStats",
]


@dataclass(frozen=True)
class MissingGaussianParams(Params):
    """Parameters of a multivariate normal.

    Attributes
    ----------
    mean : ndarray of shape (n_features,)
    covariance : ndarray of shape (n_features, n_features)
    """

    mean: np.ndarray
    covariance: np.ndarray


@dataclass(frozen=True)
class MissingGaussianStats(Stats):
    """Expected sufficient statistics, as moments about the model's fixed ``center``.

    Moments about a point near the data mean keep the M-step free of the
    cancellation of ``E[xx'] - mu mu'``: the correction ``delta delta'`` it
    subtracts is the square of the small offset ``delta`` of the mean from the
    centre. The centre is fixed for the life of the model, so statistics from
    any chunks and any parameters (as online EM blends them) add up exactly.

    Attributes
    ----------
    weight : float
        Sum of the weights of the rows with at least one observed entry.
    first : ndarray of shape (n_features,)
        ``sum_i w_i (E[x_i] - center)``.
    scatter : ndarray of shape (n_features, n_features)
        ``sum_i w_i E[(x_i - center)(x_i - center)']``: outer products of the
        filled-in rows plus the conditional covariances of their missing entries.
    observed : ndarray of shape (n_features,)
        Weighted count of the observed entries of each column.
    """

    weight: float
    first: np.ndarray
    scatter: np.ndarray
    observed: np.ndarray


class MissingGaussianModel(EMModel[MissingGaussianParams, MissingGaussianStats]):
    """EM model of a multivariate normal observed with missing entries (NaN).

    Parameters
    ----------
    ridge : float, default 0.0
        Strength of the prior ``p(Sigma) ∝ exp(-ridge / 2 * trace(inv(Sigma)))``: the
        exponential factor of an inverse-Wishart density with scale ``ridge * I``
        (improper on its own, but the posterior is proper). The M-step then gives
        ``(scatter + ridge * I) / n``: ``ridge`` is added to the diagonal of the
        scatter matrix, so ``ridge / n`` to the variances. With ``ridge > 0`` the
        estimate is a MAP estimate, always positive definite, and EM increases the
        penalised log-likelihood (:meth:`log_prior` supplies the penalty).
    center : ndarray of shape (n_features,), optional
        Fixed point about which the statistics are accumulated; anything near the
        data mean avoids cancellation (the estimator uses the observed column means
        of the first chunk). Defaults to the origin. It does not change the fit.
    """

    #: Bounds for SQUAREM acceleration (``fit(X, accelerate="squarem")``).
    param_constraints = {"mean": "real", "covariance": "spd"}

    def __init__(self, ridge: float = 0.0, center: np.ndarray | None = None) -> None:
        self.ridge = float(ridge)
        self.center = None if center is None else np.asarray(center, dtype=float)

    # -- the EM contract -------------------------------------------------------
    def initialize(self, X: np.ndarray, rng: np.random.Generator) -> MissingGaussianParams:
        """Column means and variances of the observed entries (a diagonal covariance).

        Deterministic: ``rng`` is unused. A column with no observed entry in ``X``
        (possible in one chunk of a larger data set) starts at mean 0, variance 1.
        """
        _, mean, var = observed_moments(X)
        return MissingGaussianParams(mean=mean, covariance=np.diag(np.where(var > 0, var, 1.0)))

    def conditionals(self, params: MissingGaussianParams, X: np.ndarray) -> GaussianConditionals:
        """Conditional distribution of every row's missing entries given its observed ones."""
        return conditional_gaussian(X, params.mean, params.covariance, missing_patterns(X))

    def e_step(
        self,
        params: MissingGaussianParams,
        X: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[MissingGaussianStats, float]:
        """Expected moments (filled-in rows plus conditional covariances) and log-likelihood."""
        cond = self.conditionals(params, X)
        missing = cond.patterns.missing
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        # a row with nothing observed carries no information: leave it out entirely
        w = np.where(cond.patterns.n_observed > 0, w, 0.0)
        # filled-in rows about the centre
        xc = cond.residual + (params.mean - self._center(X.shape[1]))
        stats = MissingGaussianStats(
            weight=float(w.sum()),
            first=w @ xc,
            scatter=weighted_scatter(xc, w) + cond.weighted_cov_sum(w),
            observed=w @ ~missing,
        )
        return stats, float(w @ cond.log_pdf)

    def m_step(self, stats: MissingGaussianStats) -> MissingGaussianParams:
        n, delta = self._check_stats(stats)
        cov = stats.scatter / n - np.outer(delta, delta)
        mean = self._center(len(delta)) + delta
        return MissingGaussianParams(mean=mean, covariance=self._finish_cov(cov, n))

    def constrained_m_step(
        self, stats: MissingGaussianStats, fixed: Mapping[str, Any]
    ) -> MissingGaussianParams:
        """M-step with ``mean`` and/or ``covariance`` held fixed.

        The mean's update does not depend on the covariance; the covariance's
        does on the mean, so with the mean fixed at ``m0`` it is the expected
        scatter about ``m0``: the free update plus ``(m - m0)(m - m0)'``.
        """
        if "mean" not in fixed:
            return super().constrained_m_step(stats, fixed)
        n, delta = self._check_stats(stats)
        mean0 = np.asarray(fixed["mean"], dtype=float)
        gap = self._center(len(delta)) + delta - mean0
        cov = stats.scatter / n - np.outer(delta, delta) + np.outer(gap, gap)
        cov = fixed.get("covariance", self._finish_cov(cov, n))
        return MissingGaussianParams(mean=mean0, covariance=cov)

    def log_likelihood(self, params: MissingGaussianParams, X: np.ndarray) -> float:
        """Observed-data log-likelihood: each row's density at its observed entries."""
        return float(self.score_samples(params, X).sum())

    def score_samples(self, params: MissingGaussianParams, X: np.ndarray) -> np.ndarray:
        """Log-density of each row's observed entries, shape (n_samples,); 0 if none."""
        return self.conditionals(params, X).log_pdf

    def log_prior(self, params: MissingGaussianParams) -> float:
        if self.ridge == 0.0:
            return 0.0
        chol_inv = triangular_inverse(cholesky_lower(params.covariance), lower=True)
        return -0.5 * self.ridge * float(np.sum(chol_inv**2))  # trace(inv(Sigma))

    def check_params(self, params: MissingGaussianParams) -> None:
        mean = np.asarray(params.mean)
        cov = np.asarray(params.covariance)
        if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
            raise ValueError(
                f"mean must have shape (d,) and covariance (d, d); got {mean.shape} and "
                f"{cov.shape}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("mean and covariance must be finite")
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=0.0):
            raise ValueError("covariance must be symmetric")
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(
                "covariance is not positive definite: the data do not determine it (fewer "
                "informative rows than columns, collinear or constant columns); set ridge > 0 "
                "or drop redundant columns"
            ) from None

    def n_features_of(self, params: MissingGaussianParams) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return int(np.shape(params.mean)[-1])

    def n_parameters(self, params: MissingGaussianParams) -> int:
        d = len(params.mean)
        return d + d * (d + 1) // 2

    # -- helpers ----------------------------------------------------------------
    def _center(self, d: int) -> np.ndarray:
        return np.zeros(d) if self.center is None else self.center

    def _check_stats(self, stats: MissingGaussianStats) -> tuple[float, np.ndarray]:
        n = float(stats.weight)
        if not n > 0:
            raise ValueError(
                "no row has an observed entry (with positive weight); there is nothing to fit"
            )
        check_columns_observed(stats.observed)
        return n, stats.first / n

    def _finish_cov(self, cov: np.ndarray, n: float) -> np.ndarray:
        if self.ridge:
            cov = cov + (self.ridge / n) * np.eye(len(cov))
        return 0.5 * (cov + cov.T)


def check_columns_observed(observed: np.ndarray) -> None:
    """Raise ``ValueError`` naming the columns whose observed count (or weight) is zero."""
    empty = np.flatnonzero(np.asarray(observed) <= 0)
    if empty.size:
        cols = ", ".join(str(int(j)) for j in empty)
        raise ValueError(
            f"column(s) {cols} of X have no observed value (every entry is NaN, or has zero "
            "sample weight), so their mean and variance are not identified; drop these columns"
        )


class MissingDataEstimator:
    """Mixin shared by the missing-data estimators (put it before the estimator base).

    It names the all-missing columns of in-memory data before fitting (chunked
    data are only seen chunk by chunk: there only statistics that count observed
    entries per column, as ``MissingGaussianStats`` do, can catch them),
    makes ``transform`` the subclass's ``impute``, and tells scikit-learn that
    the estimator is a transformer that accepts NaN.
    """

    def _make_source(self, X: Any, sample_weight: Any, chunk_size: int | None) -> Any:
        source = super()._make_source(X, sample_weight, chunk_size)  # type: ignore[misc]
        if not source.is_chunked:
            w = source.sample_weight
            observed = ~np.isnan(source.data)
            check_columns_observed(observed.sum(axis=0) if w is None else w @ observed)
        return source

    def _lazy_impute(self, X: Any, return_std: bool) -> Any:
        """``impute`` on a Dask array: lazy Dask arrays; None for in-memory data."""
        if as_external(X) is None:
            return None
        self._check_is_fitted()  # type: ignore[attr-defined]
        method = functools.partial(self.impute, return_std=return_std)  # type: ignore[attr-defined]
        out = ((self.n_features_in_,), np.float64)  # type: ignore[attr-defined]
        return lazy_rows(method, X, *[out] * (1 + bool(return_std)), estimator=self)

    def impute(self, X: Any, return_std: bool = False) -> Any:
        """Replace missing entries by their conditional means given the observed ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with NaN for missing entries; not modified.
        return_std : bool, default False
            Also return the conditional standard deviation of every entry (under a
            mixture it includes the uncertainty about the component).

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A new array; observed entries are copied unchanged. A row with every
            entry missing gets the fitted mean.
        std : ndarray of shape (n_samples, n_features)
            Only with ``return_std``: 0 for observed entries.
        """
        lazy = self._lazy_impute(X, return_std)
        if lazy is not None:
            return lazy
        imputed, var = self._imputed(X, return_std)
        return (imputed, np.sqrt(var)) if return_std else imputed

    def sample_imputations(
        self, X: Any, n_imputations: int = 5, random_state: Any = None
    ) -> np.ndarray:
        """Draw completed data sets for multiple imputation.

        Each draw replaces the missing entries of every row by a sample from
        their conditional distribution given the row's observed entries, under
        the fitted parameters (which are not redrawn: this is not a full Bayesian
        posterior draw). Each row's random numbers depend only on ``random_state``
        and the row's number, so a Dask array gives, lazily and partition by
        partition, exactly the draws of the same data in memory, whatever its chunks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a Dask array
            Data with NaN for missing entries; not modified.
        n_imputations : int, default 5
        random_state : None, int or numpy Generator, optional

        Returns
        -------
        ndarray of shape (n_imputations, n_samples, n_features)
            Observed entries equal ``X`` in every draw (a Dask array for Dask input).
        """
        check_scalar(n_imputations, "n_imputations", (int, np.integer), min_value=1)
        m = int(n_imputations)
        key = stream_key(random_state)
        if as_external(X) is not None:
            self._check_is_fitted()  # type: ignore[attr-defined]
            out = ((m, self.n_features_in_), np.float64)  # type: ignore[attr-defined]
            rows_first = lazy_rows(functools.partial(self._draws_by_row, m, key), X, out,
                                   estimator=self, first_row=True)
            return rows_first.transpose(1, 0, 2)
        shape = np.shape(X)
        if len(shape) == 2:  # other shapes get their own error from the validation
            check_imputations_size(m, *shape)
        return self._draw_imputations(X, m, key, 0)

    def _draws_by_row(self, n_imputations: int, key: int, X: Any, first_row: int
                      ) -> np.ndarray:
        """A block's draws, rows first: shape (n_rows, n_imputations, n_features)."""
        return self._draw_imputations(X, n_imputations, key, first_row).transpose(1, 0, 2)

    def _imputed(self, X: Any, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The conditional means of ``X`` and, with ``return_std``, the variances."""
        raise NotImplementedError

    def _draw_imputations(self, X: Any, n_imputations: int, key: int, first_row: int
                          ) -> np.ndarray:
        """``n_imputations`` completed copies of ``X``, shape (n_imputations, n, d), with
        the random numbers of rows ``first_row, ...`` of the stream ``key``."""
        raise NotImplementedError

    def transform(self, X: Any) -> np.ndarray:
        """Same as ``impute(X)``: missing entries replaced by their conditional means."""
        return self.impute(X)  # type: ignore[attr-defined]

    def fit_transform(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then impute ``X`` (equals ``fit(X).transform(X)``)."""
        return self.fit(X, sample_weight=sample_weight).transform(X)  # type: ignore[attr-defined]

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import TransformerTags  # only scikit-learn calls this

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        return tags


class MissingDataGaussian(MissingDataEstimator, EMEstimator):
    """Mean and covariance of a multivariate normal from data with missing entries.

    Missing entries are marked by NaN and are assumed missing at random. EM
    maximises the observed-data likelihood; imputation and multiple imputation
    use the conditional distribution of the missing entries given the observed
    ones under the fitted normal.

    Parameters
    ----------
    ridge : float, default 0.0
        Prior strength for the covariance: the M-step adds ``ridge`` to the
        diagonal of the scatter matrix (so ``ridge / n_samples`` to the variances),
        which is the MAP estimate under ``p(Sigma) ∝ exp(-ridge/2 trace(inv(Sigma)))``,
        the prior that ``reg_covar`` sets in the Gaussian mixtures and HMMs, where its
        strength is ``reg_covar * n / m`` (``ridge`` is not scaled with n). Use it
        when ``n_features`` is close to ``n_samples`` or the data are collinear.
        With ``ridge > 0``, ``loglik_history_`` holds the penalised
        log-likelihood, which EM never decreases.
    tol : float, default 1e-6
        Stop when the mean per-sample log-likelihood changes by less than this.
        EM with missing data can converge slowly, hence the small default.
    max_iter : int, default 500
    warm_start : bool, default False
        Start from the previous fit's parameters.
    freeze : sequence of {"mean", "covariance"}, optional
        Parameters held at their initial values.
    strict : bool, default False
        Raise instead of warning if the log-likelihood ever decreases.
    verbose : int, default 0

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    covariance_ : ndarray of shape (n_features, n_features)
    params_ : MissingGaussianParams
    converged_ : bool
    n_iter_ : int
    loglik_history_ : ndarray of shape (n_iter + 1,)
        Observed-data log-likelihood (penalised when ``ridge > 0``) at the
        initial parameters and after every iteration.
    n_features_in_ : int

    Notes
    -----
    The initial parameters are the observed column means and variances with no
    correlation (of a fixed random sample of ``init_sample_size`` rows for larger
    data); they are deterministic, so there is no ``n_init`` or ``random_state``.
    Rows with every entry missing carry no information and are ignored by the fit;
    a column with every entry missing is an error.
    """

    _allow_nan = True
    # The initialisation is deterministic: restarts would repeat it. The seed fixes the
    # rows it reads from data larger than the initialisation sample, so every fit of
    # the same data (in memory or on Dask) starts from the same parameters.
    n_init = 1
    random_state = 0

    def __init__(
        self,
        ridge: float = 0.0,
        *,
        tol: float = 1e-6,
        max_iter: int = 500,
        warm_start: bool = False,
        freeze: Any = None,
        strict: bool = False,
        verbose: int = 0,
    ) -> None:
        self.ridge = ridge
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.freeze = freeze
        self.strict = strict
        self.verbose = verbose

    def _build_model(self, X: np.ndarray) -> MissingGaussianModel:
        check_scalar(self.ridge, "ridge", (int, float), min_value=0.0)
        if not np.isfinite(self.ridge):
            raise ValueError(f"ridge must be finite, got {self.ridge!r}")
        return MissingGaussianModel(ridge=self.ridge, center=observed_moments(X)[1])

    def _make_source(self, X: Any, sample_weight: Any, chunk_size: int | None) -> Any:
        source = super()._make_source(X, sample_weight, chunk_size)
        if not source.is_chunked and len(source.data) < 2 and not self.ridge:
            raise ValueError(
                f"n_samples = {len(source.data)}: one sample determines no covariance; "
                "pass at least 2 samples, or set ridge > 0"
            )
        return source

    def _fitted_attributes(self, params: MissingGaussianParams) -> dict[str, Any]:
        return {"mean_": np.asarray(params.mean), "covariance_": np.asarray(params.covariance)}

    def _conditionals(self, X: Any) -> tuple[np.ndarray, GaussianConditionals]:
        model = self._model_for_scoring()
        X = self._validate_X(X, reset=False)
        return X, model.conditionals(self.params_, X)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-density of each row's observed entries, shape (n_samples,) (0 if none)."""
        lazy = lazy_rows(self.score_samples, X)
        if lazy is not None:
            return lazy
        return self._conditionals(X)[1].log_pdf

    def _imputed(self, X: Any, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        X, cond = self._conditionals(X)
        return cond.imputed(X), cond.conditional_variance() if return_std else None

    def _draw_imputations(self, X: Any, n_imputations: int, key: int, first_row: int
                          ) -> np.ndarray:
        X, cond = self._conditionals(X)
        n, d = X.shape
        u = row_uniforms(key, first_row, n, n_imputations * d)
        normals = row_normals(u).reshape(n, n_imputations, d).transpose(1, 0, 2)
        return cond.sample_from_normals(X, normals)
