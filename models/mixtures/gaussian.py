"""Gaussian mixture model fitted by exact EM.

:class:`GaussianMixtureModel` is the pure model (parameters in, parameters out);
:class:`GaussianMixture` is the scikit-learn style estimator over it. The
covariance structure is a strategy object from :mod:`emframe.inference.gaussian`, which
also supplies the fast E-step kernel.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from emframe.models.mixtures._gaussian_estimator import GaussianFamilyEstimator
from emframe.models.mixtures.gaussian_init import (
    INIT_METHODS,
    LABEL_METHODS,
    _check_init_params,
    _check_means,
    _check_weights,
)
from emframe.models.mixtures.noise import NoiseOption

from emframe.core.mixture import MixtureEstimator, MixtureModel
from emframe.core.params import Params
from emframe.core.validation import (
    check_array,
    check_magnitude,
    check_prior_size,
    check_scalar,
)
from emframe.inference.gaussian import (
    CovariancePrior,
    GaussianKernel,
    GaussianMoments,
    gaussian_moments,
    get_covariance_strategy,
    label_moments,
)

__all__ = [
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureParams",
    "INIT_METHODS",
    "NoisyGaussianMixtureParams",
]


@dataclasses.dataclass(frozen=True)
class GaussianMixtureParams(Params):
    """Parameters of a Gaussian mixture with K components in d dimensions.

    Attributes
    ----------
    weights : ndarray of shape (K,)
        Mixing weights, summing to one.
    means : ndarray of shape (K, d)
    covariances : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag or (K,) spherical.
    precisions_cholesky : ndarray
        Same shape as ``covariances``: the upper-triangular ``U`` with
        ``U U^T = inv(covariance)`` (full, tied) or ``1/sqrt(variance)``.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


@dataclasses.dataclass(frozen=True)
class NoisyGaussianMixtureParams(GaussianMixtureParams):
    """Gaussian mixture parameters plus the weight of a uniform noise component.

    ``weights`` are the component weights given that a point is not noise (they sum
    to one); see :mod:`emframe.models.mixtures.noise`.
    """

    noise_weight: float


class GaussianMixtureModel(CovariancePrior, MixtureModel[GaussianMixtureParams, GaussianMoments]):
    """Gaussian mixture as a pure EM model.

    Parameters
    ----------
    n_components : int
        Number of components K.
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Non-negative scale of the prior
        ``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` on each of the m
        covariance matrices (m = K, or 1 when tied), of strength
        ``lambda = reg_covar * prior_size / m`` (:meth:`prior_strength`). The M-step is
        its exact MAP estimate, which adds ``lambda / N_k`` (N_k the component's total
        weight) to the maximum-likelihood variances: about ``reg_covar`` for balanced
        components, as in scikit-learn. :meth:`log_prior` is its log density, so the
        engine monitors the penalised log-likelihood that EM increases. 0 gives
        maximum likelihood.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
        How initial responsibilities are drawn when not all of
        ``weights_init``, ``means_init`` and ``precisions_init`` are given.
    weights_init, means_init, precisions_init : array-like, optional
        Initial values overriding the ones from ``init_params``; checked against
        the data in :meth:`check_init`.
    prior_size : float, optional
        Size n of the training data the prior is attached to (its rows; with
        sample weights, the rows of positive weight); the estimators set it (see
        :class:`~emframe.inference.gaussian.CovariancePrior`). None, the default for
        a model built by hand for :func:`~emframe.core.engine.fit_em`, gives
        ``lambda = reg_covar`` (adding ``reg_covar / N_k``, which fades as data grow).
    """

    #: dtype of the fitted data (a float32 fit keeps float32 parameters, as scikit-learn).
    fit_dtype: np.dtype = np.dtype(np.float64)
    #: float32 features and products for float32 data (log-densities and moments summed
    #: in float64 per block), as scikit-learn computes float32 data in float32. None (the
    #: default): on when the estimator fits float32 data (:attr:`fit_dtype`); True or
    #: False force it. With it on, :meth:`evaluation_rtol` declares float32 precision to
    #: the monotonicity guard. A row's log-density is then within about 1e-5 nats, the
    #: M-step's parameters within 1e-4 relative of float64 arithmetic's, and a component
    #: that collapses onto d rows or fewer can be reported as not positive definite where
    #: float64 arithmetic, with the same ``reg_covar``, still fits it (its float32 second
    #: moments are indefinite by rounding): fit ``X.astype(float)`` then.
    float32_arithmetic: bool | None = None

    def uses_float32(self) -> bool:
        """Whether float32 data get float32 arithmetic (see :attr:`float32_arithmetic`)."""
        if self.float32_arithmetic is None:
            return self.fit_dtype == np.float32
        return bool(self.float32_arithmetic)

    def __init__(
        self,
        n_components: int,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        prior_size: float | None = None,
    ) -> None:
        self.n_components = check_scalar(n_components, "n_components", numbers.Integral,
                                         min_value=1)
        self.strategy = get_covariance_strategy(covariance_type)
        self.reg_covar = float(check_scalar(reg_covar, "reg_covar", numbers.Real, min_value=0.0))
        self.prior_size = check_prior_size(prior_size)
        self.init_params = _check_init_params(init_params)
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        # SQUAREM extrapolates these; complete_params derives the precision factors.
        self.param_constraints = {"weights": "simplex", "means": "real",
                                  "covariances": self.strategy.constraint}

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

    # -- initialisation ----------------------------------------------------
    def check_init(self, n_features: int) -> dict[str, np.ndarray]:
        """Validate the user-given initial values against ``n_features``.

        Returns
        -------
        dict
            The validated arrays, keyed ``weights``, ``means``, ``precisions``
            (only those given).

        Raises
        ------
        ValueError
            On a wrong shape, weights off the simplex, or precisions that are not
            symmetric positive definite (naming the component).
        """
        K = self.n_components
        out = {}
        if self.weights_init is not None:
            out["weights"] = _check_weights(self.weights_init, K)
        if self.means_init is not None:
            out["means"] = _check_means(self.means_init, K, n_features)
        if self.precisions_init is not None:
            out["precisions"] = self.strategy.check_precisions(
                self.precisions_init, K, n_features, name="precisions_init"
            )
        return out

    def initialize(self, X: Any, rng: np.random.Generator) -> GaussianMixtureParams:
        """Initial parameters: the given init arrays, the rest from ``init_params``.

        As in scikit-learn, responsibilities drawn by ``init_params`` go through
        one M-step, then the user-given weights, means and precisions replace
        their parts; when all three are given, no responsibilities are drawn.
        """
        X = check_magnitude(np.asarray(X, dtype=float))
        n, d = X.shape
        given = self.check_init(d)
        start: dict[str, Any] = {}
        if len(given) < 3:
            if n < self.n_components:
                raise ValueError(
                    f"Expected n_samples >= n_components, but got n_samples = {n}, "
                    f"n_components = {self.n_components}"
                )
            if self.init_params in LABEL_METHODS:
                labels = LABEL_METHODS[self.init_params](X, self.n_components, rng)
                moments = label_moments(X, labels, self.n_components, self.strategy)
            else:
                resp = INIT_METHODS[self.init_params](X, self.n_components, rng)
                moments = gaussian_moments(X, resp, self.strategy)
            # the sample's M-step, with the prior attached to the sample
            start = self.for_sample(n).m_step(moments).as_dict()
        if "precisions" in given:
            pc = self.strategy.precisions_cholesky_from_precisions(given["precisions"])
            start["precisions_cholesky"] = pc
            start["covariances"] = self.strategy.covariances_from_precisions_cholesky(pc)
        for name in ("weights", "means"):
            if name in given:
                start[name] = given[name]
        return GaussianMixtureParams(**start)

    def evaluation_rtol(self) -> float:
        """``8 * eps(float32)`` (~1e-6) with float32 arithmetic (:meth:`uses_float32`), else 0.

        float32 rounding moves the evaluated log-likelihood by ~1e-8 relative (measured
        on W1; a row's error is at most a few float32 units of its log-density), above the
        engine's float64 tolerance (1e-9) near convergence.
        """
        return 8.0 * float(np.finfo(np.float32).eps) if self.uses_float32() else 0.0

    # -- EM ----------------------------------------------------------------
    def _kernel(self, params: GaussianMixtureParams) -> GaussianKernel:
        return GaussianKernel(
            self.strategy, params.means, params.precisions_cholesky, weights=params.weights
        )

    def log_weighted_prob(self, params: GaussianMixtureParams, X: Any) -> np.ndarray:
        return self._kernel(params).log_prob(np.asarray(X, dtype=float))

    def predict_proba(self, params: GaussianMixtureParams, X: Any) -> np.ndarray:
        # defined (never NaN) also where every density underflows: GaussianKernel.posteriors
        X = np.asarray(X, dtype=float)
        return self._kernel(params).posteriors(X, self.log_weighted_prob(params, X))

    def predict(self, params: GaussianMixtureParams, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(params, X), axis=1)

    def e_step(
        self,
        params: GaussianMixtureParams,
        X: Any,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[GaussianMoments, float]:
        """Posterior-weighted moments and the (weighted) log-likelihood, in one fused pass.

        float32 data are scored without a float64 copy (see :attr:`float32_arithmetic`).

        Returns
        -------
        stats : GaussianMoments
            Referenced at a point fixed by ``params``, so statistics of chunks
            scored with the same parameters add exactly.
        log_likelihood : float
        """
        X = np.asarray(X)
        if X.dtype != np.float32:
            X = X.astype(np.float64, copy=False)
        kernel = GaussianKernel(
            self.strategy, params.means, params.precisions_cholesky, weights=params.weights,
            dtype=X.dtype if self.uses_float32() else np.float64,
        )
        return kernel.mixture_e_step(X, sample_weight)

    def log_likelihood(self, params: GaussianMixtureParams, X: Any) -> float:
        return self.e_step(params, X)[1]  # fused: cheaper than densities and a logsumexp

    def stats_from_resp(self, X: Any, resp: np.ndarray) -> GaussianMoments:
        return gaussian_moments(np.asarray(X, dtype=float), resp, self.strategy)

    def m_step(self, stats: GaussianMoments) -> GaussianMixtureParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(
        self, stats: GaussianMoments, fixed: Mapping[str, Any]
    ) -> GaussianMixtureParams:
        """M-step holding the parameters in ``fixed`` at their values.

        With frozen means the covariances are centred at the frozen means, so
        the step is the exact conditional maximiser. ``covariances`` and
        ``precisions_cholesky`` describe the same thing: freezing either
        freezes both.
        """
        nk = stats.nk_eff
        weights = fixed["weights"] if "weights" in fixed else nk / nk.sum()
        frozen_means = fixed.get("means")
        means = stats.means() if frozen_means is None else frozen_means
        cov, pc = self.covariances_and_factors(fixed, lambda: self.strategy.covariances(
            stats, self.prior_strength(self.n_components), about=frozen_means))
        return GaussianMixtureParams(weights, means, cov, pc)

    def covariances_and_factors(
        self, fixed: Mapping[str, Any], estimate: Callable[[], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The covariances and their precision factors in an M-step holding ``fixed``.

        Either held one gives the other; with neither held the covariances are
        ``estimate()``.

        Parameters
        ----------
        fixed : mapping
            The held parameters; only ``covariances`` and ``precisions_cholesky`` are read.
        estimate : callable
            Returns the M-step's covariances, in the covariance type's shape.

        Returns
        -------
        covariances, precisions_cholesky : ndarray
        """
        cov, pc = fixed.get("covariances"), fixed.get("precisions_cholesky")
        if cov is None and pc is None:
            cov = estimate()
            pc = self.strategy.precisions_cholesky(cov, self.reg_covar)
        elif pc is None:
            pc = self.strategy.precisions_cholesky(cov, self.reg_covar)
        elif cov is None:
            cov = self.strategy.covariances_from_precisions_cholesky(pc)
        return cov, pc

    def log_prior(self, params: GaussianMixtureParams) -> float:
        """``-lambda / 2 * sum_j trace(inv(Sigma_j))``, the penalty the M-step maximises with."""
        d = np.shape(params.means)[-1]
        lam = self.prior_strength(self.n_components)
        return self.strategy.log_prior(params.precisions_cholesky, lam, d)

    def complete_params(
        self, like: GaussianMixtureParams, values: Mapping[str, Any]
    ) -> GaussianMixtureParams:
        """``like`` with extrapolated ``values``; the precision factors follow the covariances."""
        params = like.replace(**values)
        if "covariances" in values:
            pc = self.strategy.precisions_cholesky(params.covariances, self.reg_covar)
            params = params.replace(precisions_cholesky=pc)
        return params

    # -- sampling and checks -----------------------------------------------
    def sample_components(
        self, params: GaussianMixtureParams, labels: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One draw from component ``labels[i]`` for each i, shape (len(labels), d)."""
        d = params.means.shape[1]
        out = np.empty((len(labels), d))
        for k in np.unique(labels):
            rows = labels == k
            z = rng.standard_normal((int(rows.sum()), d))
            out[rows] = params.means[k] + self.strategy.sample_noise(
                params.precisions_cholesky, int(k), z
            )
        return out

    def check_params(self, params: GaussianMixtureParams) -> None:
        """Shapes, finiteness, weights on the simplex, positive Cholesky diagonals."""
        K = self.n_components
        means = np.asarray(params.means)
        if means.ndim != 2 or means.shape[0] != K:
            raise ValueError(f"means must have shape ({K}, n_features), got {means.shape}")
        d = means.shape[1]
        shape = self.strategy.shape(K, d)
        for name, value, expected in [
            ("weights", params.weights, (K,)),
            ("covariances", params.covariances, shape),
            ("precisions_cholesky", params.precisions_cholesky, shape),
        ]:
            arr = np.asarray(value)
            if arr.shape != expected:
                raise ValueError(
                    f"{name} must have shape {expected} for covariance_type="
                    f"{self.covariance_type!r} with {K} components, got {arr.shape}"
                )
        for name, value in params.as_dict().items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"parameter {name!r} has non-finite values")
        w = np.asarray(params.weights)
        if (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
            raise ValueError(f"weights must be non-negative and sum to 1, got {w}")
        if not (self.strategy.factor_diagonal(np.asarray(params.precisions_cholesky)) > 0).all():
            raise ValueError("precisions_cholesky must have a positive diagonal")

    def n_features_of(self, params: GaussianMixtureParams) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return int(np.shape(params.means)[-1])

    def n_parameters(self, params: GaussianMixtureParams) -> int:
        K, d = np.asarray(params.means).shape
        return int(self.strategy.n_parameters(K, d) + K * d + K - 1)


class GaussianMixture(NoiseOption, GaussianFamilyEstimator, MixtureEstimator):
    """Gaussian mixture model estimated by EM, with scikit-learn's interface.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the component covariances.
    tol : float, default=1e-3
        Stop when the mean per-sample log-likelihood improves by less than this.
    reg_covar : float, default=1e-6
        Non-negative regularisation that keeps the covariances positive definite:
        about the variance added to each covariance for components of balanced
        weights, as in scikit-learn. Exactly, each M-step is the MAP estimate under
        ``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` on each of the m
        covariance matrices (m = K, 1 when tied), ``lambda = reg_covar * n / m`` for
        n training rows (of positive weight; ``prior_size_``): it adds
        ``lambda / N_k`` to the variances of a component of total weight ``N_k``
        (exactly ``reg_covar`` when tied or K = 1, where the iterates equal
        scikit-learn's), and ``loglik_history_`` is the penalised log-likelihood, a
        fixed objective that EM never decreases. scikit-learn adds ``reg_covar`` to
        the variances after maximising, an update that maximises no objective, so
        its likelihood can decrease; with ``reg_covar=0`` both are maximum
        likelihood and the iterates are equal.
    max_iter : int, default=100
        Maximum number of EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the highest likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        ``"kmeans"``: responsibilities from k-means labels;
        ``"k-means++"``: one k-means++ seed per component;
        ``"random"``: random responsibilities;
        ``"random_from_data"``: one random data point per component.
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Initial precisions (inverse covariances) in the covariance type's
        shape. If all three are given, ``init_params`` is not used.
    random_state : None, int or numpy Generator, optional
    warm_start : bool, default=False
        Continue from the previous fit's parameters (one initialisation).
    verbose : int, default=0
    freeze : tuple of str, default=()
        Parameters held at their initial values: any of ``"weights"``,
        ``"means"``, ``"covariances"`` (freezing ``"covariances"`` or
        ``"precisions_cholesky"`` fixes both), and ``"noise_weight"`` with
        ``noise=True``. With frozen means the covariances are centred at them.
    strict : bool, default=False
        Raise instead of warn if the log-likelihood ever decreases.
    noise : bool, default=False
        Add a uniform background component over the bounding box of the training
        data, with its weight estimated by EM (mclust's noise component; see
        :mod:`emframe.models.mixtures.noise`). Then ``predict`` returns -1 for
        points most probably noise and ``predict_proba`` has a last column for it.
    noise_init : float in (0, 1), default=0.05
        Initial weight of the noise component (with ``noise=True``).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        With ``noise=True`` they sum to ``1 - noise_weight_``.
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shape depends on ``covariance_type`` (see :mod:`emframe.inference.gaussian`).
    noise_weight_, noise_volume_, noise_bounds_ : float, float, ndarray of shape (2, n_features)
        Only with ``noise=True``: the weight of the noise component, the volume
        of the box and its lower and upper corners.
    precisions_cholesky_ : ndarray
    precisions_ : ndarray
    params_ : GaussianMixtureParams
    converged_ : bool
    n_iter_ : int
    loglik_history_ : ndarray of shape (n_iter + 1,)
        Total log-likelihood before each M-step, and after the last one.
    lower_bound_ : float
        Log-likelihood per sample at the fitted parameters (scikit-learn's meaning).
    lower_bounds_ : ndarray of shape (n_iter + 1,)
        ``loglik_history_`` per sample.
    prior_size_ : int
        Rows (of positive weight) the ``reg_covar`` prior is attached to; after
        ``partial_fit``, the samples seen.
    n_features_in_ : int

    Notes
    -----
    The fitted arrays are read-only views of ``params_``: assigning a new array
    to an attribute does not change the model, which always predicts from
    ``params_``.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        freeze: tuple[str, ...] = (),
        strict: bool = False,
        noise: bool = False,
        noise_init: float = 0.05,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.freeze = freeze
        self.strict = strict
        self.noise = noise
        self.noise_init = noise_init

    _noisy_params_class = NoisyGaussianMixtureParams

    #: The model class built from the hyperparameters (subclasses swap it).
    _model_class: type[GaussianMixtureModel] = GaussianMixtureModel

    def _build_model(self, X: Any) -> GaussianMixtureModel:
        n, d = np.shape(X)
        model = self._make_model(d)
        model.fit_dtype = np.dtype(getattr(X, "dtype", np.float64))
        if n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components, but got n_samples = {n}, "
                f"n_components = {self.n_components}"
            )
        return model

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        """Float32 input stays float32, as in scikit-learn (not with missing entries)."""
        if not self._allow_nan and getattr(X, "dtype", None) == np.float32:
            self._check_feature_names(X, reset=reset)
            X = check_array(X, allow_nan=self._allow_nan, dtype=np.float32)
            self._check_n_features(X, reset=reset)
            return X
        return super()._validate_X(X, reset=reset)

    def _set_params(self, params: GaussianMixtureParams) -> None:
        # float32 data give float32 parameters, as in scikit-learn (arithmetic stays float64)
        if getattr(getattr(self, "_model", None), "fit_dtype", None) == np.float32:
            params = params.replace(**{k: np.asarray(v, dtype=np.float32)
                                       for k, v in params.as_dict().items()})
        super()._set_params(params)
