"""The named HMM estimators: GaussianHMM, CategoricalHMM, PoissonHMM, MultinomialHMM, GMMHMM.

Each is the generic :class:`~emframe.models.hmm.HMM` with a fixed emission
component built from its hyperparameters, and the emission parameters exposed
under hmmlearn's attribute names (``means_``, ``covars_``, ``emissionprob_``,
``lambdas_``, ``weights_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from emframe.models.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    MultinomialEmission,
    PoissonEmission,
    check_symbols,
)
from emframe.models.hmm.emissions.categorical import check_table_size
from emframe.models.hmm.estimator import HMM, _ParamAttribute, _store_args

from emframe.core.validation import check_scalar

__all__ = ["CategoricalHMM", "GaussianHMM", "GMMHMM", "MultinomialHMM", "PoissonHMM"]

_COMMON_DOC = """
    startprob_prior : float or array-like of shape (n_components,), default 1.0
        Dirichlet concentration of the start probabilities (MAP; >= 1, 1 = no prior).
    transmat_prior : float or array-like of shape (n_components, n_components), default 1.0
        Dirichlet concentration of every transition row (MAP; >= 1, 1 = no prior).
        Zeros of an initial ``transmat_`` stay zero in any case.
    algorithm : {"viterbi", "map"}, default "viterbi"
        Decoder used by :meth:`predict` and :meth:`decode`.
    init_params : str
        Letters of the parameters ``fit`` initialises; the others are read from
        the attributes set before ``fit``. ``""`` means all were given.
    params : str
        Letters of the parameters EM updates; the others stay at their initial values.
    tol : float, default 1e-4
        Stop when the mean per-step log-likelihood improves by less than this.
    max_iter : int, default 100
        Maximum EM iterations per restart (hmmlearn's ``n_iter``).
    n_init : int, default 1
        Restarts from independent random initialisations; the best is kept.
    random_state : None, int or numpy Generator
    verbose : int, default 0
    warm_start : bool, default False
        Continue from the parameters of the previous fit.
    strict : bool, default False
        Raise instead of warning if the log-likelihood ever decreases.
    backend : {"auto", "numpy", "numba"}, default "auto"
        Forward-backward backend; "auto" uses numba when it is installed."""


class _FeatureCount:
    """hmmlearn's ``n_features`` attribute: the number of features (columns of X).

    After ``fit`` it is ``n_features_in_``; before, the value you set or, failing that,
    the width of the emission attribute you set (``means_``, ``lambdas_``). Setting it
    before ``fit`` makes ``fit`` check the data's width against it.
    """

    _width_field: str | None

    @property
    def n_features(self) -> int:
        if "params_" in self.__dict__:
            return int(self.n_features_in_)  # type: ignore[attr-defined]
        if "_n_features" in self.__dict__:
            return int(self.__dict__["_n_features"])
        given = self.__dict__.get("_given", {})
        if self._width_field in given:
            return int(np.shape(given[self._width_field])[-1])
        raise AttributeError(
            f"{type(self).__name__} has no n_features yet: fit it, or set "
            f"{self._width_field}_ (or n_features) first"
        )

    @n_features.setter
    def n_features(self, value: int) -> None:
        check_scalar(value, "n_features", (int, np.integer), min_value=1)
        if "params_" in self.__dict__ and int(value) != self.n_features_in_:  # type: ignore[attr-defined]
            raise ValueError(
                f"n_features = {value}, but the fitted parameters are for "
                f"{self.n_features_in_} features"  # type: ignore[attr-defined]
            )
        self.__dict__["_n_features"] = int(value)

    def _given_width(self, values: Any) -> int:
        return int(self.n_features)

    def _check_width(self, seqs: Any, emission: Any, *, reset: bool) -> None:
        wanted = self.__dict__.get("_n_features")
        width = int(seqs.X.shape[1])
        if reset and wanted is not None and "params_" not in self.__dict__ and width != wanted:
            raise ValueError(
                f"X has {width} features, but n_features was set to {wanted}; drop the "
                "n_features you set or pass data of that width"
            )
        super()._check_width(seqs, emission, reset=reset)  # type: ignore[misc]


class CategoricalHMM(HMM):
    __doc__ = f"""HMM with categorical emissions: one column of integer symbols 0 .. n_features-1.

    A missing symbol is -1 (or NaN): its step counts only through the transitions;
    :meth:`impute` fills it with the most probable symbol given all observed data.

    Parameters
    ----------
    n_components : int, default 1
        Number of hidden states.
    n_features : int, optional
        Number of symbols. Default: ``emissionprob_.shape[1]`` when given before
        ``fit``, else one more than the largest symbol in the training data.
        ``n_components * n_features`` may be at most ``MAX_TABLE_SIZE`` = 2**27
        (a 1 GiB table); larger alphabets are refused before anything is allocated.
        As in hmmlearn, a successful ``fit`` or ``partial_fit`` sets it to the
        alphabet it used, so later fits keep that alphabet.
    emissionprob_prior : float or array-like of shape (n_components, n_features), default 1.0
        Dirichlet concentration of every row of ``emissionprob_`` (MAP; >= 1).
    {_COMMON_DOC}

    Letters: ``"s"`` startprob_, ``"t"`` transmat_, ``"e"`` emissionprob_.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emissionprob_ : ndarray of shape (n_components, n_features)
        ``emissionprob_[k, s] = p(symbol s | state k)``.
    converged_, n_iter_, loglik_history_, params_
    """

    emissionprob_ = _ParamAttribute(
        "emissionprob", "Emission probabilities, shape (n_components, n_features)."
    )

    def __init__(
        self,
        n_components: int = 1,
        *,
        n_features: int | None = None,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        emissionprob_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str = "ste",
        params: str = "ste",
        tol: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        strict: bool = False,
        backend: str = "auto",
    ) -> None:
        _store_args(self, locals())

    def _make_emission(self, X: Any) -> CategoricalEmission:
        if self.n_features is not None:
            check_scalar(self.n_features, "n_features", (int, np.integer), min_value=1)
            n_symbols = int(self.n_features)
        elif (
            X is None or self._is_warm() or "e" not in (self.init_params or "")
        ) and hasattr(self, "emissionprob_"):
            # The alphabet of the given (or fitted) emission probabilities.
            shape = np.shape(self.emissionprob_)
            if len(shape) != 2:
                raise ValueError(
                    f"emissionprob_ must be a 2-D array of shape (n_components, n_features) "
                    f"= ({self.n_components}, n_features), got shape {shape}"
                )
            n_symbols = int(shape[1])
        else:
            n_symbols = int(check_symbols(X, allow_missing=True)[:, 0].max()) + 1
            if n_symbols == 0:
                raise ValueError(
                    "every symbol of X is missing (-1 or NaN): nothing to fit, and the "
                    "number of symbols is unknown (give n_features)"
                )
        check_table_size(int(self.n_components), n_symbols)
        prior = np.asarray(self.emissionprob_prior, dtype=float)
        if not np.all(np.isfinite(prior)) or np.any(prior < 1.0):
            raise ValueError(
                f"emissionprob_prior must be >= 1 everywhere (1 means no prior), got "
                f"{self.emissionprob_prior!r}"
            )
        try:
            np.broadcast_to(prior, (int(self.n_components), n_symbols))
        except ValueError:
            raise ValueError(
                f"emissionprob_prior must broadcast to shape (n_components, n_features) = "
                f"({self.n_components}, {n_symbols}), got shape {prior.shape}"
            ) from None
        return CategoricalEmission(n_symbols, prior)

    def _given_width(self, values: Any) -> int:
        return 1  # one column of symbols

    def fit(self, X: Any, lengths: Any = None, **kwargs: Any) -> CategoricalHMM:
        super().fit(X, lengths, **kwargs)
        self.n_features = self._model.emission.n_symbols  # hmmlearn's convention
        return self

    def partial_fit(self, X: Any, lengths: Any = None, **kwargs: Any) -> CategoricalHMM:
        super().partial_fit(X, lengths, **kwargs)
        self.n_features = self._model.emission.n_symbols
        return self


class PoissonHMM(_FeatureCount, HMM):
    __doc__ = f"""HMM with Poisson emissions: non-negative integer counts, one or more features.

    Features are independent given the state, each with its own rate. NaN marks a
    missing count (marginalised in the likelihood, its expectation in the M-step).

    Parameters
    ----------
    n_components : int, default 1
        Number of hidden states.
    lambdas_prior, lambdas_weight : float or array-like, default 0.0
        A Gamma prior on every rate (hmmlearn's parameters), its density proportional
        to ``lam ** lambdas_prior * exp(-lambdas_weight * lam)``: Gamma with shape
        ``lambdas_prior + 1`` and rate ``lambdas_weight``. Numbers or arrays
        broadcastable to (n_components, n_features) (a per-state value has shape
        (n_components, 1)), >= 0; both 0 (the default) is maximum likelihood. The
        M-step is the MAP update ``(lambdas_prior + S_k) / (lambdas_weight + N_k)``
        (``N_k`` expected steps in state k, ``S_k`` their summed counts), and
        ``loglik_history_`` includes the log prior density. (hmmlearn divides by
        ``lambdas_weight + N`` with N the steps of all states, which equals this only
        for one state.)
    {_COMMON_DOC}

    Letters: ``"s"`` startprob_, ``"t"`` transmat_, ``"l"`` lambdas_.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    lambdas_ : ndarray of shape (n_components, n_features)
        Poisson rate of every feature in every state.
    n_features : int
        Number of features, as in hmmlearn: ``n_features_in_`` after ``fit``; before
        it, the value set or the width of the emission attribute set.
    converged_, n_iter_, loglik_history_, params_
    """

    lambdas_ = _ParamAttribute("lambdas", "Rates, shape (n_components, n_features).")
    _width_field = "lambdas"

    def __init__(
        self,
        n_components: int = 1,
        *,
        lambdas_prior: Any = 0.0,
        lambdas_weight: Any = 0.0,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str = "stl",
        params: str = "stl",
        tol: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        strict: bool = False,
        backend: str = "auto",
    ) -> None:
        _store_args(self, locals())

    def _make_emission(self, X: Any) -> PoissonEmission:
        emission = PoissonEmission(self.lambdas_prior, self.lambdas_weight)
        # checked here, against the data's width, rather than at the first M-step
        if X is not None and np.ndim(X) == 2:
            emission.check_prior(int(self.n_components), int(np.shape(X)[1]))
        elif "n_features_in_" in self.__dict__:
            emission.check_prior(int(self.n_components), int(self.n_features_in_))
        return emission


class MultinomialHMM(_FeatureCount, HMM):
    __doc__ = f"""HMM with multinomial emissions: each row counts the trials of a step per category.

    Row t holds non-negative integer counts over ``n_features`` categories; in state k
    it is ``Multinomial(n_t, emissionprob_[k])`` with ``n_t`` the row's number of
    trials. A row of NaN is a missing step (it counts only through the transitions);
    a row with only some counts missing is refused.

    Parameters
    ----------
    n_components : int, default 1
        Number of hidden states.
    n_trials : int or None, default None
        The number of trials of every step: every row of the data must sum to it
        (checked). None takes each row's total as its number of trials, so rows may
        differ (hmmlearn's likelihood; hmmlearn then stores the training totals in
        ``n_trials``, emframe leaves the argument as given). ``sample``, ``impute`` and
        ``sample_imputations`` need an int.
    {_COMMON_DOC}

    Letters: ``"s"`` startprob_, ``"t"`` transmat_, ``"e"`` emissionprob_.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emissionprob_ : ndarray of shape (n_components, n_features)
        Probability that a trial in state k falls in category j; rows sum to one.
    n_features : int
        Number of categories (columns of X), as in hmmlearn: ``n_features_in_`` after
        ``fit``; before it, the value set or the width of ``emissionprob_`` set.
    converged_, n_iter_, loglik_history_, params_

    Notes
    -----
    The M-step is ``emissionprob_[k] ∝ sum_t gamma_tk x_t`` (closed form), as
    hmmlearn's. A category of probability 0 in a state makes any row counting it
    impossible there (log-likelihood -inf), and such zeros stay zero.
    """

    emissionprob_ = _ParamAttribute(
        "emissionprob", "Category probabilities, shape (n_components, n_features)."
    )
    _width_field = "emissionprob"

    def __init__(
        self,
        n_components: int = 1,
        n_trials: int | None = None,
        *,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str = "ste",
        params: str = "ste",
        tol: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        strict: bool = False,
        backend: str = "auto",
    ) -> None:
        _store_args(self, locals())

    def _make_emission(self, X: Any) -> MultinomialEmission:
        if self.n_trials is not None:
            check_scalar(self.n_trials, "n_trials", (int, np.integer), min_value=1)
        return MultinomialEmission(self.n_trials)


class GaussianHMM(_FeatureCount, HMM):
    __doc__ = f"""HMM with multivariate Gaussian emissions.

    NaN marks a missing entry: each step's likelihood is that of its observed entries,
    and the M-step uses the conditional moments of the missing ones (exact EM for the
    observed-data likelihood); :meth:`impute` and :meth:`sample_imputations` fill them in.

    Parameters
    ----------
    n_components : int, default 1
        Number of hidden states.
    covariance_type : {{"diag", "full", "spherical", "tied"}}, default "diag"
        Structure of the state covariances (hmmlearn's default is "diag" too).
    reg_covar : float, default 1e-6
        About the variance added to each covariance for states of balanced
        occupancy, as hmmlearn's ``covars_prior`` and scikit-learn's ``reg_covar``;
        exactly, each M-step is the MAP estimate under the prior
        ``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` on each of the m state
        covariances, with ``lambda = reg_covar * n / m`` for n time steps
        (``prior_size_``) and m = K (1 when tied): ``lambda / N_k`` is added to the
        variances of a state with occupancy ``N_k`` (hmmlearn's
        ``covars_prior=lambda``, ``covars_weight=1``), and ``loglik_history_``
        includes its log density. 0 gives the textbook Baum-Welch update.
    {_COMMON_DOC}

    Letters: ``"s"`` startprob_, ``"t"`` transmat_, ``"m"`` means_, ``"c"`` covars_.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    means_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray
        In the compact shape of ``covariance_type``, the same when read and when
        set: (n_components,) spherical, (n_components, n_features) diag,
        (n_components, n_features, n_features) full, (n_features, n_features) tied.
        (hmmlearn returns full matrices when read but expects this shape when set.)
    prior_size_ : int
        Time steps the ``reg_covar`` prior is attached to (see ``reg_covar``).
    n_features : int
        Number of features, as in hmmlearn: ``n_features_in_`` after ``fit``; before
        it, the value set or the width of the emission attribute set.
    converged_, n_iter_, loglik_history_, params_
    """

    means_ = _ParamAttribute("means", "State means, shape (n_components, n_features).")
    _width_field = "means"
    covars_ = _ParamAttribute("covars", "State covariances in the covariance_type's shape.")

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "diag",
        *,
        reg_covar: float = 1e-6,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str = "stmc",
        params: str = "stmc",
        tol: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        strict: bool = False,
        backend: str = "auto",
    ) -> None:
        _store_args(self, locals())

    def _make_emission(self, X: Any) -> GaussianEmission:
        return GaussianEmission(self.covariance_type, self.reg_covar)


class GMMHMM(_FeatureCount, HMM):
    __doc__ = f"""HMM whose states emit a mixture of ``n_mix`` Gaussians.

    NaN marks a missing entry, handled exactly as in :class:`GaussianHMM`.

    Parameters
    ----------
    n_components : int, default 1
        Number of hidden states.
    n_mix : int, default 1
        Gaussian components per state.
    covariance_type : {{"diag", "full", "spherical", "tied"}}, default "diag"
        "tied" shares one matrix between the components of a state (as in hmmlearn).
    reg_covar : float, default 1e-6
        The covariance prior, as for :class:`GaussianHMM`, on every mixture component
        of every state: ``lambda = reg_covar * n / m`` with m = K * n_mix matrices (K
        when tied), about ``reg_covar`` added to the variances of balanced
        components; 0 gives maximum likelihood.
    {_COMMON_DOC}

    Letters: ``"s"`` startprob_, ``"t"`` transmat_, ``"w"`` weights_, ``"m"`` means_,
    ``"c"`` covars_.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    weights_ : ndarray of shape (n_components, n_mix)
    means_ : ndarray of shape (n_components, n_mix, n_features)
    covars_ : ndarray
        (n_components, n_mix) spherical, (n_components, n_mix, n_features) diag,
        (n_components, n_mix, n_features, n_features) full,
        (n_components, n_features, n_features) tied.
    n_features : int
        Number of features, as in hmmlearn: ``n_features_in_`` after ``fit``; before
        it, the value set or the width of the emission attribute set.
    converged_, n_iter_, loglik_history_, params_, prior_size_

    Notes
    -----
    The covariance update is the textbook one, centred at the new means. hmmlearn's
    GMMHMM centres it at the previous iteration's means (a generalised-EM step), so
    the two agree exactly only when the means or the covariances are held fixed.
    """

    weights_ = _ParamAttribute("weights", "Mixture weights, shape (n_components, n_mix).")
    means_ = _ParamAttribute("means", "Means, shape (n_components, n_mix, n_features).")
    _width_field = "means"
    covars_ = _ParamAttribute("covars", "Covariances in the covariance_type's shape.")

    def __init__(
        self,
        n_components: int = 1,
        n_mix: int = 1,
        covariance_type: str = "diag",
        *,
        reg_covar: float = 1e-6,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str = "stmcw",
        params: str = "stmcw",
        tol: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        strict: bool = False,
        backend: str = "auto",
    ) -> None:
        _store_args(self, locals())

    def _make_emission(self, X: Any) -> GMMEmission:
        return GMMEmission(self.n_mix, self.covariance_type, self.reg_covar)
