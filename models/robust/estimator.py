"""The scikit-learn style estimator of the Student-t mixture."""

from __future__ import annotations

from typing import Any

import numpy as np
from emframe.models.mixtures._gaussian_estimator import GaussianFamilyEstimator
from emframe.models.mixtures.noise import NoiseOption
from emframe.models.robust.student_t import (
    NoisyStudentTMixtureParams,
    StudentTMixtureModel,
    StudentTMixtureParams,
    _check_n_samples,
)

from emframe.core.exceptions import warn
from emframe.core.executors import lazy_rows
from emframe.core.mixture import MixtureEstimator
from emframe.inference.student_t import DOF_MIN

__all__ = ["StudentTMixture"]


class StudentTMixture(NoiseOption, GaussianFamilyEstimator, MixtureEstimator):
    """Mixture of multivariate Student-t distributions, robust to outliers, fitted by EM.

    The interface is :class:`~emframe.models.GaussianMixture`'s, plus the degrees
    of freedom. Each component is a t distribution: a Gaussian whose precision is
    scaled by a latent weight, so a point far from every component gets a small
    weight (see :meth:`outlier_scores`) and barely moves the locations and scale
    matrices, where a Gaussian mixture bends its means and inflates its
    covariances towards it. The degrees of freedom are estimated per component
    (an exact one-dimensional maximisation in every M-step), which makes the
    model adapt between heavy tails (small ``dof_``) and the Gaussian mixture
    (``dof_`` at its upper bound ``emframe.inference.student_t.DOF_MAX = 1e6``).
    Every iteration is an exact EM step, so ``loglik_history_`` never decreases.
    See :mod:`emframe.models.robust.student_t` for the algorithm.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the scale matrices.
    tol : float, default=1e-3
        Stop when the mean per-sample log-likelihood improves by less than this.
    reg_covar : float, default=1e-6
        Regularisation of the scale matrices, as in ``GaussianMixture``: about the
        variance added to each for components of balanced weights; exactly the MAP
        under a prior of strength ``reg_covar * n / m`` on each of the m matrices
        (n rows, ``prior_size_``).
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the Gaussian-mixture start is drawn; see ``GaussianMixture``.
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Inverse scale matrices, in the covariance type's shape.
    dof_init : float or array-like of shape (n_components,), default=10.0
        Initial degrees of freedom, positive and finite (one for all components,
        or one each). Any finite value is accepted; with ``freeze=("dof",)`` it is
        kept (also above ``DOF_MAX``), otherwise the M-step keeps the estimate in
        ``[DOF_MIN, DOF_MAX] = [0.01, 1e6]``.
    noise : bool, default=False
        Add a uniform background component over the bounding box of the training
        data, its weight estimated by EM (see
        :mod:`emframe.models.mixtures.noise`): ``predict`` then returns -1 for
        points most probably noise and ``predict_proba`` gets a last column for it.
    noise_init : float in (0, 1), default=0.05
        Initial weight of the noise component.
    random_state : None, int or numpy Generator, optional
    warm_start : bool, default=False
    verbose : int, default=0
    freeze : tuple of str, default=()
        Parameters held at their initial values: any of ``"weights"``,
        ``"means"``, ``"covariances"`` (or ``"precisions_cholesky"``: either
        freezes both), ``"dof"`` and, with ``noise=True``, ``"noise_weight"``.
    strict : bool, default=False
        Raise instead of warn if the log-likelihood ever decreases.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixing weights; with ``noise=True`` they sum to ``1 - noise_weight_``.
    means_ : ndarray of shape (n_components, n_features)
        Locations.
    covariances_ : ndarray
        Scale matrices, shaped by ``covariance_type``. A component's covariance
        is ``dof / (dof - 2)`` times its scale matrix (for ``dof > 2``).
    precisions_cholesky_ : ndarray
        Cholesky factors of the inverse scale matrices.
    precisions_ : ndarray
        Inverse scale matrices.
    dof_ : ndarray of shape (n_components,)
        Degrees of freedom.
    noise_weight_, noise_volume_, noise_bounds_ : float, float, ndarray of shape (2, n_features)
        Only with ``noise=True``.
    params_ : StudentTMixtureParams (NoisyStudentTMixtureParams with noise)
    converged_, n_iter_, loglik_history_, lower_bound_, n_features_in_
        As for ``GaussianMixture``.

    Notes
    -----
    ``StudentTMixture`` needs complete data: NaN in ``X`` is an error. For data
    with missing entries use ``MissingDataGaussianMixture``, which marginalises
    them exactly.
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
        dof_init: Any = 10.0,
        noise: bool = False,
        noise_init: float = 0.05,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        freeze: tuple[str, ...] = (),
        strict: bool = False,
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
        self.dof_init = dof_init
        self.noise = noise
        self.noise_init = noise_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.freeze = freeze
        self.strict = strict

    _noisy_params_class = NoisyStudentTMixtureParams

    _model_class = StudentTMixtureModel
    _extra_model_args = ("dof_init",)

    def _build_model(self, X: Any) -> StudentTMixtureModel:
        n, d = np.shape(X)
        model = self._make_model(d)
        _check_n_samples(n, self.n_components)
        return model

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        try:
            return super()._validate_X(X, reset=reset)
        except ValueError as exc:
            if "NaN" not in str(exc):
                raise
            raise ValueError(
                f"{exc}. {type(self).__name__} does not take missing values; "
                "MissingDataGaussianMixture fits a mixture to data with NaN entries"
            ) from None

    def _run(self, model: Any, source: Any, callbacks: Any = None, **options: Any) -> Any:
        result = super()._run(model, source, callbacks, **options)
        self._warn_if_dof_at_floor()
        return result

    def _warn_if_dof_at_floor(self) -> None:
        """Warn when estimated degrees of freedom ended at ``DOF_MIN`` (a degenerate t fit).

        At the upper bound ``DOF_MAX`` a component is Gaussian, a sound answer that needs
        no warning.
        """
        frozen = (self.freeze,) if isinstance(self.freeze, str) else tuple(self.freeze or ())
        if "dof" in frozen:
            return
        dof = np.asarray(self._t_params().dof)
        at_floor = np.flatnonzero(dof <= DOF_MIN * (1.0 + 1e-6))
        if not at_floor.size:
            return
        which = ("component " + str(int(at_floor[0])) if at_floor.size == 1
                 else f"components {at_floor.tolist()}")
        warn(
            f"{type(self).__name__}: the degrees of freedom of {which} reached their lower "
            f"bound DOF_MIN={DOF_MIN:g}, so the t fit is degenerate: a t component with dof "
            "near 0 is a spike at its location with extremely heavy tails, which the "
            "likelihood favours when many rows coincide, as when the data are not continuous "
            "(binary or integer values, repeated rows). Model such data otherwise (for "
            "example BernoulliMixture for binary data), or hold the degrees of freedom "
            "fixed (dof_init=..., freeze=('dof',))",
            UserWarning,
        )

    def _t_model(self) -> StudentTMixtureModel:
        model = self._model_for_scoring()
        return model.base if self._noisy() else model

    def _t_params(self) -> StudentTMixtureParams:
        return self._model.split(self.params_)[0] if self._noisy() else self.params_

    def _fitted_attributes(self, params: StudentTMixtureParams) -> dict[str, Any]:
        return {**super()._fitted_attributes(params), "dof_": params.dof}

    def outlier_scores(self, X: Any) -> np.ndarray:
        """Outlyingness of each sample: larger means more outlying.

        The score is ``-log E[u | x]``, with ``E[u | x] = sum_k P(k | x) E[u | x, k]``
        the expected precision weight of the sample under the fitted t
        components: the weight it gets in the M-step. ``E[u | x, k] = (dof_k + d) /
        (dof_k + m_k(x))`` decreases with the squared Mahalanobis distance
        ``m_k(x)`` to component k, so the score is ``log((dof + m) / (dof + d))``
        for a single component: about 0 for a typical point (``m`` near ``d``),
        negative near the centre, and growing like ``log m`` far away. Ranking by
        it ranks by the distance to the component that claims the point; under
        the model ``m / d`` follows an F(d, dof) distribution, which calibrates a
        threshold.

        With ``noise=True`` the responsibilities are those of the t components
        given that the point is not noise; the probability of being noise is
        ``predict_proba(X)[:, -1]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            A Dask array, computed lazily partition by partition, when ``X`` is one.
        """
        lazy = lazy_rows(self.outlier_scores, X)
        if lazy is not None:
            return lazy
        model = self._t_model()
        X = self._validate_X(X, reset=False)
        return -model.log_expected_weight(self._t_params(), X)
