"""Gaussian mixture on incomplete data: each component's E-step marginalises the missing entries.

:class:`MissingGaussianMixtureModel` extends the complete-data
:class:`~emframe.models.mixtures.gaussian.GaussianMixtureModel`. It keeps its
parameters, initialisation, M-step and covariance strategies, and changes only
what the missing entries touch: the log-density of a row is that of its observed
entries, and the E-step statistics of a row in component k hold the
conditional mean of its missing entries given its observed ones, plus their
conditional covariance, under that component. Rows with nothing missing go
through the parent's fused kernel unchanged, so on complete data the model *is*
the ordinary Gaussian mixture.

The conditionals come from :mod:`emframe.inference.gaussian.conditional` (rows grouped by
missingness pattern, batched factorisations), once per component, sharing one
grouping of the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from emframe.models.missing.gaussian import MissingDataEstimator
from emframe.models.mixtures.gaussian import (
    GaussianMixture,
    GaussianMixtureModel,
    GaussianMixtureParams,
)

from emframe.core.numerics import log_normalize, safe_log
from emframe.core.row_random import row_normals, row_uniforms
from emframe.inference.gaussian import GaussianMoments
from emframe.inference.gaussian.conditional import (
    GaussianConditionals,
    conditional_gaussian,
    missing_patterns,
    observed_moments,
    weighted_scatter,
)

__all__ = ["MissingDataGaussianMixture", "MissingGaussianMixtureModel"]


class MissingGaussianMixtureModel(GaussianMixtureModel):
    """Gaussian mixture EM model for data with NaN-marked missing entries.

    Takes the parameters of :class:`~emframe.models.mixtures.gaussian.GaussianMixtureModel`
    and supports all its covariance types: the conditionals are computed from each
    component's covariance as a dense matrix, and the statistics are returned in
    the representation the covariance type's M-step expects.
    """

    def uses_float32(self) -> bool:
        """Never: the conditionals of incomplete rows are computed in float64, so the
        monotonicity guard keeps float64's tolerance for float32 data too."""
        return False

    # -- initialisation ------------------------------------------------------
    def initialize(self, X: Any, rng: np.random.Generator) -> GaussianMixtureParams:
        """The parent's initialisation on ``X`` with missing entries set to column means.

        Mean imputation is only a starting point for ``init_params`` (k-means and
        friends need complete rows); on complete data it changes nothing.
        """
        X = np.asarray(X, dtype=float)
        missing = np.isnan(X)
        if missing.any():
            X = np.where(missing, observed_moments(X)[1], X)
        return super().initialize(X, rng)

    # -- the conditional machinery --------------------------------------------
    def dense_covariances(self, params: GaussianMixtureParams) -> np.ndarray:
        """Every component's covariance as a (d, d) matrix, shape (K, d, d).

        Generic over covariance types: ``sample_noise`` maps standard normal rows
        ``Z`` to ``Z B`` with ``B' B`` the component's covariance.
        """
        K, d = np.shape(params.means)
        eye = np.eye(d)
        out = np.empty((K, d, d))
        for k in range(K):
            b = self.strategy.sample_noise(params.precisions_cholesky, k, eye)
            out[k] = b.T @ b
        return out

    def conditionals(
        self, params: GaussianMixtureParams, X: np.ndarray
    ) -> list[GaussianConditionals]:
        """Conditional distribution of the missing entries under each component (K items)."""
        patterns = missing_patterns(X)
        covs = self.dense_covariances(params)
        return [
            conditional_gaussian(X, params.means[k], covs[k], patterns)
            for k in range(self.n_components)
        ]

    def _log_weighted(
        self, params: GaussianMixtureParams, conds: list[GaussianConditionals]
    ) -> np.ndarray:
        log_pdf = np.column_stack([c.log_pdf for c in conds])
        return log_pdf + safe_log(np.asarray(params.weights))

    def _represent(self, matrix: np.ndarray) -> np.ndarray:
        """A symmetric (d, d) matrix in the statistics' representation (full, diagonal, trace)."""
        d = matrix.shape[0]
        # sum_j e_j m_j' is the matrix itself; cross() builds each term in the representation
        return self.strategy.moments.cross(np.eye(d), matrix.T).sum(axis=0)

    # -- the EM contract ---------------------------------------------------------
    def log_weighted_prob(self, params: GaussianMixtureParams, X: Any) -> np.ndarray:
        """``log w_k + log p_k(observed entries of x_i)``, shape (n_samples, K).

        A row with nothing observed gets ``log w_k``.
        """
        X = np.asarray(X, dtype=float)
        incomplete = np.isnan(X).any(axis=1)
        if not incomplete.any():
            return super().log_weighted_prob(params, X)
        out = np.empty((X.shape[0], self.n_components))
        if not incomplete.all():
            out[~incomplete] = super().log_weighted_prob(params, X[~incomplete])
        out[incomplete] = self._log_weighted(params, self.conditionals(params, X[incomplete]))
        return out

    def e_step(
        self,
        params: GaussianMixtureParams,
        X: Any,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[GaussianMoments, float]:
        """Posterior-weighted expected moments and the observed-data log-likelihood.

        Complete rows use the parent's kernel; incomplete rows add the
        conditional covariance of their missing entries to the second moment.
        Rows with nothing observed carry no information and are left out.
        """
        X = np.asarray(X, dtype=float)
        incomplete = np.isnan(X).any(axis=1)
        if not incomplete.any():
            return super().e_step(params, X, sample_weight)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        stats, loglik = self._incomplete_e_step(
            params, X[incomplete], None if w is None else w[incomplete]
        )
        if not incomplete.all():
            done = ~incomplete
            s, ll = super().e_step(params, X[done], None if w is None else w[done])
            stats, loglik = stats + s, loglik + ll
        return stats, loglik

    def _incomplete_e_step(
        self, params: GaussianMixtureParams, X: np.ndarray, w: np.ndarray | None
    ) -> tuple[GaussianMoments, float]:
        conds = self.conditionals(params, X)
        log_resp, log_norm = log_normalize(self._log_weighted(params, conds), axis=1)
        weight = np.ones(len(X)) if w is None else w
        weight = np.where(conds[0].patterns.n_observed > 0, weight, 0.0)
        resp = np.exp(log_resp) * weight[:, None]
        sum_x = np.empty(np.shape(params.means))
        sum_xx = []
        for k, c in enumerate(conds):
            r = resp[:, k]
            sum_x[k] = r @ c.residual
            sum_xx.append(self._represent(weighted_scatter(c.residual, r) + c.weighted_cov_sum(r)))
        # moments about the component means (the residuals' origin); adding them to
        # the kernel's moments shifts both exactly to a common reference
        stats = self.strategy.moments(
            resp.sum(axis=0), np.array(params.means), sum_x, np.stack(sum_xx)
        )
        return stats, float(weight @ log_norm)

    def stats_from_resp(self, X: Any, resp: np.ndarray) -> GaussianMoments:
        """Complete-data statistics from responsibilities (used by the conformance checks).

        With missing entries the statistics depend on the parameters as well;
        use :meth:`e_step`.
        """
        X = np.asarray(X, dtype=float)
        if np.isnan(X).any():
            raise ValueError(
                "stats_from_resp needs complete data; with missing entries the expected "
                "statistics depend on the parameters, so use e_step(params, X)"
            )
        return super().stats_from_resp(X, resp)

    # -- imputation -----------------------------------------------------------------
    def impute(
        self, params: GaussianMixtureParams, X: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Conditional means and variances of every entry under the mixture.

        The conditional distribution of the missing entries of a row is a
        mixture of the components' conditionals, with the components' posterior
        probabilities given the observed entries as weights.

        Returns
        -------
        imputed : ndarray of shape (n_samples, n_features)
            Observed entries copied from ``X``.
        variance : ndarray of shape (n_samples, n_features)
            0 for observed entries.
        """
        conds = self.conditionals(params, X)
        post = np.exp(log_normalize(self._log_weighted(params, conds), axis=1)[0])
        means = [c.mean + c.residual for c in conds]
        mix = sum(post[:, [k]] * m for k, m in enumerate(means))
        # law of total variance, about the mixture mean (no cancellation)
        var = sum(
            post[:, [k]] * (c.conditional_variance() + (m - mix) ** 2)
            for k, (c, m) in enumerate(zip(conds, means, strict=True))
        )
        missing = conds[0].patterns.missing
        return np.where(missing, mix, X), np.where(missing, var, 0.0)

    def sample_imputations(
        self, params: GaussianMixtureParams, X: np.ndarray, uniforms: np.ndarray,
    ) -> np.ndarray:
        """Draws of ``X`` with missing entries from their conditional mixture.

        Each draw picks a component per row from its posterior given the observed
        entries, then the missing entries from that component's conditional.

        Parameters
        ----------
        params : GaussianMixtureParams
        X : ndarray of shape (n_samples, n_features)
        uniforms : ndarray of shape (n_samples, n_draws * (1 + n_features))
            Each row's own uniform numbers in (0, 1) (see
            :func:`~emframe.core.row_random.row_uniforms`): the first ``n_draws`` pick
            the components, the rest give the normal numbers.

        Returns
        -------
        ndarray of shape (n_draws, n_samples, n_features)
        """
        n, d = X.shape
        n_draws = uniforms.shape[1] // (1 + d)
        conds = self.conditionals(params, X)
        post = np.exp(log_normalize(self._log_weighted(params, conds), axis=1)[0])
        cum = np.cumsum(post, axis=1)
        u = uniforms[:, :n_draws].T[:, :, None]  # (n_draws, n, 1)
        labels = np.minimum((u > cum[None]).sum(axis=2), self.n_components - 1)
        normals = row_normals(uniforms[:, n_draws:]).reshape(n, n_draws, d).transpose(1, 0, 2)
        out = np.empty((n_draws,) + X.shape)
        for k, c in enumerate(conds):
            chosen = labels == k
            if chosen.any():
                out[chosen] = c.sample_from_normals(X, normals)[chosen]
        return out


class MissingDataGaussianMixture(MissingDataEstimator, GaussianMixture):
    """Gaussian mixture fitted by EM to data with missing entries (NaN).

    Takes exactly the parameters of
    :class:`~emframe.models.mixtures.gaussian.GaussianMixture` (all four covariance
    types) and has the same fitted attributes. Every component's E-step
    marginalises the missing entries of each row, so the fit maximises the
    observed-data likelihood; the entries are assumed missing at random.
    ``predict``, ``predict_proba``, ``score_samples``, ``score`` and ``bic``
    accept incomplete rows and use their observed entries; :meth:`impute` and
    :meth:`sample_imputations` fill in the missing ones.

    On data with no missing value it is the ordinary ``GaussianMixture``: the
    same initialisation, the same iterates, the same result. With one component
    it equals :class:`~emframe.models.MissingDataGaussian` with ``ridge`` equal
    to ``reg_covar * n`` for n rows (both are the prior ``exp(-r/2 trace(inv(Sigma)))``,
    the mixture's of strength ``reg_covar * n / K``), from the same start. Rows with
    every entry missing add nothing to the likelihood, but count in n.

    Notes
    -----
    ``init_params`` runs on the data with missing entries replaced by the
    observed column means; EM then works with the incomplete data. A row with
    every entry missing carries no information and is ignored by the fit (it is
    assigned to components by their weights); a column with every entry
    missing is an error for in-memory data. With chunked data it is not
    detected (the mixture's statistics carry no per-column counts): the
    column's parameters are then unidentified and their fitted values meaningless.
    """

    _allow_nan = True
    _model_class = MissingGaussianMixtureModel

    def _checked(self, X: Any) -> tuple[MissingGaussianMixtureModel, np.ndarray]:
        model = self._model_for_scoring()
        return model, self._validate_X(X, reset=False)

    def _imputed(self, X: Any, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        model, X = self._checked(X)
        return model.impute(self.params_, X)

    def _draw_imputations(self, X: Any, n_imputations: int, key: int, first_row: int
                          ) -> np.ndarray:
        model, X = self._checked(X)
        n, d = X.shape
        uniforms = row_uniforms(key, first_row, n, n_imputations * (1 + d))
        return model.sample_imputations(self.params_, X, uniforms)
