"""Missing values of an HMM's observations: posterior means and posterior draws.

Given the state, a step's observation depends on nothing else, so the distribution of
its missing entries given all observed data is a mixture over the step's state of the
emission's conditional (given the observed entries of the step), weighted by the
smoothed posterior ``p(z_t = k | all observed data)``. Posterior draws take a whole
state path from ``p(z | observed)`` by forward filtering, backward sampling, then every
step's missing entries from the conditional of its drawn state: together an exact draw
of the missing values from their joint posterior.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from emframe.models.hmm.external import lazy
from emframe.models.hmm.model import HMMModel, HMMParams, Sequences

from emframe.core.numerics import safe_log
from emframe.core.validation import check_imputations_size, check_random_state, check_scalar
from emframe.inference.hmm import sample_paths

__all__ = ["MissingValuesMixin", "impute", "sample_imputations"]


def impute(
    model: HMMModel, params: HMMParams, seqs: Sequences, *, return_var: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Posterior means (modes for symbols) of the missing entries, and their variances.

    Returns
    -------
    imputed : ndarray of shape (n_samples, n_features)
        Observed entries copied unchanged; of the emission's ``impute_dtype``.
    variance : ndarray of shape (n_samples, n_features) or None
        Only with ``return_var``: 0 where observed.

    Raises
    ------
    ValueError
        If ``return_var`` is asked of an emission whose imputations have no variance.
    """
    emission = model.emission
    X = seqs.X
    imputed, var = np.array(X, dtype=float), np.zeros(X.shape)
    rows = emission.missing_mask(X).any(axis=1)  # only these need the emission's work
    if rows.any():
        post = model.posterior(params, seqs).posteriors
        imputed[rows], v = emission.impute(params.emission, X[rows], post[rows])
        if return_var and v is None:
            raise ValueError(
                f"{type(emission).__name__} imputes symbols, which have no standard deviation; "
                "use sample_imputations to see the uncertainty"
            )
        if v is not None:
            var[rows] = v
    return imputed.astype(emission.impute_dtype, copy=False), var if return_var else None


def sample_imputations(
    model: HMMModel,
    params: HMMParams,
    seqs: Sequences,
    n_draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Completions of ``seqs.X`` drawn from the posterior of the missing entries.

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_features)
        Observed entries equal ``seqs.X`` in every draw.
    """
    emission = model.emission
    X = seqs.X
    out = np.repeat(np.array(X, dtype=float)[None], n_draws, axis=0)
    rows = emission.missing_mask(X).any(axis=1)  # only these need the emission's work
    if rows.any():
        paths = sample_paths(
            safe_log(params.startprob), safe_log(params.transmat),
            model._log_emission(params, seqs), seqs.lengths, n_draws=n_draws, rng=rng,
        )
        out[:, rows] = emission.sample_missing(params.emission, X[rows], paths[:, rows], rng)
    return out.astype(emission.impute_dtype, copy=False)


class MissingValuesMixin:
    """The HMM estimators' ``impute`` and ``sample_imputations``.

    Mixed into :class:`~emframe.models.hmm.HMM`, whose ``_check_data``, ``_model``,
    ``params_`` and ``random_state`` it uses.
    """

    def impute(self, X: Any, lengths: Any = None, *, states: Any = None,
               return_std: bool = False) -> Any:
        """Fill the missing entries of ``X`` with their posterior expectation given all data.

        It mixes the states' conditional expectations by the smoothed state posteriors
        (a :class:`CategoricalHMM` fills in the most probable symbol instead).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing entry (-1 too, for a CategoricalHMM); not modified.
        lengths : array-like of int, optional
        states : array-like of int, shape (n_samples,), optional
            Known states (-1 where unknown).
        return_std : bool, default False
            Also return the posterior standard deviation of every entry (0 where
            observed), the state's uncertainty included. Not for symbols.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            Observed entries are copied unchanged. Integers (int64) for a
            :class:`CategoricalHMM`, whatever the input's dtype; floats otherwise.
        std : ndarray of shape (n_samples, n_features)
            Only with ``return_std``.

        On a Dask array the results are lazy Dask arrays.
        """
        d = (getattr(self, "n_features_in_", 0),)
        model = self.__dict__.get("_model")
        dtype = model.emission.impute_dtype if model is not None else np.float64
        out = lazy(self, self.impute, X, lengths, states,
                   (d, dtype), *[(d, np.float64)] * bool(return_std), return_std=return_std)
        if out is not None:
            return out
        seqs = self._check_data(X, lengths, states)
        imputed, var = impute(self._model, self.params_, seqs, return_var=return_std)
        return (imputed, np.sqrt(var)) if return_std else imputed

    def sample_imputations(
        self,
        X: Any,
        lengths: Any = None,
        n_imputations: int = 5,
        random_state: Any = None,
        *,
        states: Any = None,
    ) -> np.ndarray:
        """Completed data sets drawn from the posterior, for multiple imputation.

        Each draw takes a state path from its posterior (forward filtering, backward
        sampling), then every step's missing entries from their conditional given its
        state and observed entries: an exact draw from ``p(missing | observed)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int, optional
        n_imputations : int, default 5
        random_state : None, int or numpy Generator, optional
            Defaults to the estimator's ``random_state``.
        states : array-like of int, shape (n_samples,), optional
            Known states (-1 where unknown).

        Returns
        -------
        ndarray of shape (n_imputations, n_samples, n_features)
            Observed entries equal ``X`` in every draw; integers for a CategoricalHMM.
        """
        check_scalar(n_imputations, "n_imputations", (int, np.integer), min_value=1)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        seqs = self._check_data(X, lengths, states)
        check_imputations_size(int(n_imputations), *seqs.X.shape)
        return sample_imputations(self._model, self.params_, seqs, int(n_imputations), rng)
