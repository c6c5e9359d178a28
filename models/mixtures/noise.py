"""A uniform background ("noise") component for any mixture, as mclust adds for scattered noise.

:class:`UniformNoiseModel` wraps a mixture model with K components and adds a
(K+1)-th component of constant density ``1 / V``, ``V`` the volume of the
bounding box of the training data. Its weight ``noise_weight`` is estimated by
EM with the rest. :class:`NoiseOption` gives a mixture estimator the ``noise``
and ``noise_init`` options built on it (``GaussianMixture``, ``StudentTMixture``).

Parametrisation. The wrapped parameters are the base mixture's, whose
``weights`` are the component weights *given that a point is not noise* (they
sum to one), plus ``noise_weight``; the mixture is
``p(x) = (1 - noise_weight) sum_k w_k p_k(x) + noise_weight / V``. This is a
one-to-one reparametrisation of the (K+1)-component mixture, so EM in it is
exact EM: the E-step weights each row's statistics for the base model by its
posterior probability of not being noise, and the M-step is the base model's
M-step on those statistics plus ``noise_weight = expected noise count / n``.

The background density is the constant ``1 / V`` everywhere, also outside the
box when new data are scored (as mclust's ``Vinv``), so a point far outside the
training range is classed as noise rather than forced into a component.
``score_samples`` is therefore a density only on the training data's box.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import logsumexp

from emframe.core.data import DataSource
from emframe.core.estimator import available_if
from emframe.core.exceptions import warn
from emframe.core.executors import as_external
from emframe.core.mixture import MixtureModel
from emframe.core.numerics import log_normalize, safe_log
from emframe.core.params import Params, Stats
from emframe.core.validation import check_random_state, check_scalar

__all__ = ["NoiseOption", "NoiseStats", "UniformNoiseModel", "bounding_box"]

#: Why the noise component can take (practically) every point, and what to do.
_ALL_NOISE_WHY = (
    "the data hold no cluster denser than the uniform background over their bounding box, "
    "or the components are too wide, for example when reg_covar (a prior on the covariances, "
    "in the data's units squared) is large compared with the features' variances. "
    "Standardise the data, lower reg_covar, or use noise=False"
)


@dataclasses.dataclass(frozen=True)
class NoiseStats(Stats):
    """Statistics of a mixture with a noise component.

    Attributes
    ----------
    components : Stats
        The base model's statistics, each row weighted by its posterior
        probability of not being noise (times its sample weight).
    signal : float
        Sum of those probabilities (times sample weights).
    noise : float
        Sum of the posterior probabilities of being noise (times sample weights).
    """

    components: Stats
    signal: float
    noise: float


def _box(chunk: Any, _: Any) -> np.ndarray | None:
    x = np.asarray(chunk, dtype=float)
    return np.stack([x.min(axis=0), x.max(axis=0)]) if x.shape[0] else None


def _merge_boxes(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None or b is None:
        return b if a is None else a
    return np.stack([np.minimum(a[0], b[0]), np.maximum(a[1], b[1])])


def bounding_box(source: DataSource) -> np.ndarray:
    """``[lower, upper]`` (2, d) of all the rows of a data source, in one pass.

    The pass is the source's :meth:`~emframe.core.data.DataSource.map_reduce`, so
    it runs where the data are (on a Dask cluster too).

    Raises
    ------
    ValueError
        If the box has zero volume (a constant feature, or a single row).
    """
    box = source.map_reduce(_box, _merge_boxes)
    if box is None:
        raise ValueError("the data source is empty: it yielded no rows")
    lower, upper = box
    flat = np.flatnonzero(~(upper > lower))
    if flat.size and source.count_rows() < 2:  # counted only on this error path
        raise ValueError(
            "noise=True needs at least 2 samples for a bounding box of positive volume, "
            "got n_samples = 1"
        )
    if flat.size:
        raise ValueError(
            f"noise=True needs data whose bounding box has positive volume, but feature "
            f"{int(flat[0])} is constant (all values {lower[flat[0]]:.6g}); drop constant "
            "features or use noise=False"
        )
    return np.stack([lower, upper])


class UniformNoiseModel(MixtureModel[Params, NoiseStats]):
    """A mixture model plus a uniform component over a box.

    Parameters
    ----------
    base : MixtureModel
        The K structured components. It must accept ``sample_weight`` in its
        E-step; its statistics are weighted by each row's posterior
        probability of not being noise.
    bounds : ndarray of shape (2, d)
        Lower and upper corners of the box (the training data's bounding box).
    noise_init : float in (0, 1)
        Initial ``noise_weight``.
    params_class : type
        The base model's parameter class extended by one field ``noise_weight``
        (a float): it is a subclass of the base class.

    Notes
    -----
    Attributes that this wrapper does not define (``strategy``,
    ``covariance_type``, ``n_components``, ...) are the base model's. Columns of
    :meth:`log_weighted_prob` and :meth:`predict_proba` are the K components,
    then the noise.
    """

    def __init__(
        self, base: MixtureModel, bounds: np.ndarray, noise_init: float, params_class: type
    ) -> None:
        self.base = base
        self.bounds = np.array(bounds, dtype=float)
        self.log_volume = float(np.sum(np.log(self.bounds[1] - self.bounds[0])))
        self.noise_init = float(noise_init)
        self.params_class = params_class
        self.base_class = params_class.__bases__[0]
        constraints = getattr(base, "param_constraints", None)
        self.param_constraints = (
            None if constraints is None else {**constraints, "noise_weight": "unit"}
        )

    def __getattr__(self, name: str) -> Any:
        # only called for names not found normally; "base" guards copy/pickle recursion
        if name == "base" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    # -- the base model's prior (EMModel defines these, so __getattr__ would not) ----
    @property
    def prior_size(self) -> float | None:  # type: ignore[override]
        return self.base.prior_size

    @property
    def scales_prior_with_data(self) -> bool:
        return self.base.scales_prior_with_data

    def data_warnings(self, X: Any) -> list[Warning]:
        return self.base.data_warnings(X)

    def with_prior_size(self, prior_size: float | None) -> UniformNoiseModel:
        """A copy whose base model has its prior attached to ``prior_size`` samples."""
        model = copy.copy(self)
        model.base = self.base.with_prior_size(prior_size)
        return model

    # -- parameters ------------------------------------------------------------------
    def split(self, params: Params) -> tuple[Params, float]:
        """The base model's parameters and the noise weight."""
        base = self.base_class(**{n: getattr(params, n) for n in self.base_class.field_names()})
        return base, float(params.noise_weight)

    def join(self, base_params: Params, noise_weight: float) -> Params:
        """Inverse of :meth:`split`."""
        return self.params_class(**base_params.as_dict(), noise_weight=float(noise_weight))

    def initialize(self, X: Any, rng: np.random.Generator) -> Params:
        """The base model's initial parameters and ``noise_weight = noise_init``."""
        return self.join(self.base.initialize(X, rng), self.noise_init)

    def check_params(self, params: Params) -> None:
        if not isinstance(params, self.params_class):
            raise ValueError(
                f"expected {self.params_class.__name__} (parameters with a noise weight), "
                f"got {type(params).__name__}"
            )
        base, pi0 = self.split(params)
        self.base.check_params(base)
        if pi0 == 1.0:
            raise ValueError(
                "noise_weight must lie in [0, 1), got 1.0: the noise component has taken every "
                f"point, leaving the components no data: {_ALL_NOISE_WHY}"
            )
        if not 0.0 <= pi0 < 1.0:
            raise ValueError(f"noise_weight must lie in [0, 1), got {pi0}")

    def n_features_of(self, params: Params) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return self.base.n_features_of(self.split(params)[0])

    def n_parameters(self, params: Params) -> int:
        return int(self.base.n_parameters(self.split(params)[0]) + 1)

    def log_prior(self, params: Params) -> float:
        return float(self.base.log_prior(self.split(params)[0]))

    def complete_params(self, like: Params, values: Mapping[str, Any]) -> Params:
        base_like, pi0 = self.split(like)
        rest = {k: v for k, v in values.items() if k != "noise_weight"}
        base = self.base.complete_params(base_like, rest) if rest else base_like
        return self.join(base, float(values.get("noise_weight", pi0)))

    # -- EM -----------------------------------------------------------------------------
    def _noise_log_prob(self, pi0: float) -> float:
        return float(safe_log(pi0)) - self.log_volume

    def log_weighted_prob(self, params: Params, X: Any) -> np.ndarray:
        base, pi0 = self.split(params)
        comp = self.base.log_weighted_prob(base, X) + float(safe_log(1.0 - pi0))
        noise = np.full((comp.shape[0], 1), self._noise_log_prob(pi0))
        return np.concatenate([comp, noise], axis=1)

    def e_step(
        self, params: Params, X: Any, sample_weight: np.ndarray | None = None
    ) -> tuple[NoiseStats, float]:
        """Base statistics weighted by ``P(not noise | x)``, the two counts, the log-likelihood.

        ``P(component k | x) = P(not noise | x) P_base(k | x)``, so the base E-step
        with sample weights ``w * P(not noise | x)`` gives exactly the base
        statistics under the full mixture.
        """
        base, pi0 = self.split(params)
        log_signal = logsumexp(self.base.log_weighted_prob(base, X), axis=1)
        log_signal = log_signal + float(safe_log(1.0 - pi0))
        log_noise = np.full_like(log_signal, self._noise_log_prob(pi0))
        log_post, log_norm = log_normalize(np.stack([log_signal, log_noise], axis=1), axis=1)
        post = np.exp(log_post)
        if sample_weight is not None:
            post *= sample_weight[:, None]
            loglik = float(sample_weight @ log_norm)
        else:
            loglik = float(log_norm.sum())
        stats, _ = self.base.e_step(base, X, sample_weight=post[:, 0])
        return NoiseStats(stats, float(post[:, 0].sum()), float(post[:, 1].sum())), loglik

    def stats_from_resp(self, X: Any, resp: np.ndarray) -> NoiseStats:
        """Statistics from responsibilities (n, K+1), the last column the noise."""
        resp = np.asarray(resp, dtype=float)
        comp = self.base.stats_from_resp(X, resp[:, :-1])
        return NoiseStats(comp, float(resp[:, :-1].sum()), float(resp[:, -1].sum()))

    def m_step(self, stats: NoiseStats) -> Params:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(self, stats: NoiseStats, fixed: Mapping[str, Any]) -> Params:
        """The base model's (constrained) M-step, and the expected noise fraction."""
        base_fixed = {k: v for k, v in fixed.items() if k != "noise_weight"}
        base = self.base.constrained_m_step(stats.components, base_fixed)
        if "noise_weight" in fixed:
            pi0 = float(fixed["noise_weight"])
        else:
            pi0 = stats.noise / (stats.noise + stats.signal)
        return self.join(base, pi0)

    # -- sampling -----------------------------------------------------------------------
    def sample_components(
        self, params: Params, labels: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Draws from component ``labels[i]``; label K is the uniform noise on the box."""
        base, _ = self.split(params)
        labels = np.asarray(labels)
        K = np.asarray(base.weights).shape[0]
        out = np.empty((labels.shape[0], self.bounds.shape[1]))
        noise = labels == K
        if (~noise).any():
            out[~noise] = self.base.sample_components(base, labels[~noise], rng)
        lo, hi = self.bounds
        out[noise] = lo + (hi - lo) * rng.random((int(noise.sum()), lo.shape[0]))
        return out


def check_noise_init(noise_init: Any) -> float:
    """Validate the initial noise weight: a number strictly between 0 and 1."""
    check_scalar(noise_init, "noise_init", numbers.Real, min_value=0.0, max_value=1.0,
                 include_min=False, include_max=False)
    return float(noise_init)


def _partial_fit_unavailable(estimator: Any) -> str | None:
    """Why ``partial_fit`` is unavailable (``noise=True``), or None."""
    if isinstance(estimator.noise, (bool, np.bool_)) and estimator.noise:
        return (
            "partial_fit is not available with noise=True: the noise density needs the "
            "bounding box of all the data; use fit (with chunk_size or method='online' "
            "for large data), or noise=False"
        )
    return None


class NoiseOption:
    """Mixin giving a mixture estimator the ``noise`` and ``noise_init`` options.

    List it before :class:`~emframe.core.mixture.MixtureEstimator` in the bases,
    store ``noise`` and ``noise_init`` in the constructor, set
    ``_noisy_params_class`` and let ``_rebuild_model`` return
    ``self._with_noise(model)``. With ``noise=True``: the model is wrapped in
    :class:`UniformNoiseModel` over the training data's bounding box;
    ``predict`` returns -1 for points most probably noise; ``predict_proba`` has a
    last column for the noise; ``sample`` labels noise draws -1; ``weights_`` are the
    components' mixing weights (summing to ``1 - noise_weight_``); extra fitted
    attributes ``noise_weight_``, ``noise_volume_`` and ``noise_bounds_`` (2, d).
    """

    noise: bool
    noise_init: float
    _noisy_params_class: type
    #: Fitted attributes a model file restores (the bounding box comes from the data, and
    #: _rebuild_model needs it); emframe.load checks them against params_ after the rebuild.
    _saved_attributes = ("noise_weight_", "noise_volume_", "noise_bounds_")

    def _noise_on(self) -> bool:
        if not isinstance(self.noise, (bool, np.bool_)):
            raise TypeError(f"noise must be True or False, got {self.noise!r}")
        if not self.noise:
            return False
        check_noise_init(self.noise_init)
        if getattr(self, "_allow_nan", False):
            raise ValueError(
                f"noise=True is not supported by {type(self).__name__}: the uniform noise "
                "density of a row with missing entries is not defined here; use noise=False"
            )
        return True

    def _noisy(self) -> bool:
        """Whether the fitted model has a noise component."""
        return isinstance(getattr(self, "_model", None), UniformNoiseModel)

    def _with_noise(self, model: MixtureModel) -> MixtureModel:
        """``model`` wrapped with the fitted noise component, when there is one (for load)."""
        bounds = getattr(self, "noise_bounds_", None)
        if bounds is None or not self.noise:
            return model
        return UniformNoiseModel(model, bounds, check_noise_init(self.noise_init),
                                 self._noisy_params_class)

    def _warm_params(self) -> Params | None:
        params = super()._warm_params()  # type: ignore[misc]
        if params is not None and isinstance(params, self._noisy_params_class) != self.noise:
            raise ValueError(
                "warm_start cannot switch the noise option between fits: the fitted parameters "
                f"{'have' if not self.noise else 'lack'} a noise weight; set warm_start=False"
            )
        return params

    def _run(self, model: Any, source: DataSource, callbacks: Any = None, **options: Any) -> Any:
        if not self._noise_on():
            return super()._run(model, source, callbacks, **options)  # type: ignore[misc]
        model = UniformNoiseModel(model, bounding_box(source), self.noise_init,
                                  self._noisy_params_class)
        result = super()._run(model, source, callbacks, **options)  # type: ignore[misc]
        _, pi0 = model.split(result.params)
        if (1.0 - pi0) * result.n_samples < 1.0:  # less than one row left to the components
            warn(
                f"{type(self).__name__}: the noise component holds practically every point "
                f"(noise_weight_ = {pi0!r}, less than one row left to the components), so "
                f"the fit is degenerate: {_ALL_NOISE_WHY}",
                UserWarning,
            )
        return result

    def _set_params(self, params: Params) -> None:
        if not self._noisy():  # a refit without noise drops a former fit's noise attributes
            for name in ("noise_weight_", "noise_volume_", "noise_bounds_"):
                self.__dict__.pop(name, None)
        super()._set_params(params)  # type: ignore[misc]

    def _fitted_attributes(self, params: Params) -> dict[str, Any]:
        attrs = super()._fitted_attributes(params)  # type: ignore[misc]
        if not self._noisy():
            return attrs
        model = self._model
        _, pi0 = model.split(params)
        weights = (1.0 - pi0) * np.asarray(params.weights)
        weights.flags.writeable = False
        bounds = model.bounds.copy()
        bounds.flags.writeable = False
        return {**attrs, "weights_": weights, "noise_weight_": pi0,
                "noise_volume_": float(np.exp(model.log_volume)), "noise_bounds_": bounds}

    def _attribute_setters(self) -> dict[str, Any]:
        setters = super()._attribute_setters()  # type: ignore[misc]
        if not self._noisy():
            return setters

        def weights(params: Params, value: np.ndarray) -> Params:
            # weights_ and noise_weight_ sum to 1; the parameters hold the components'
            # weights among themselves
            pi0 = float(params.noise_weight)
            if not abs(value.sum() + pi0 - 1.0) <= 1e-6:
                raise ValueError(
                    f"weights_ must sum to 1 - noise_weight_ = {1.0 - pi0!r} (the noise "
                    f"component holds the rest), got {float(value.sum())!r}")
            return params.replace(weights=value / (1.0 - pi0))

        return {**setters, "weights_": weights, "noise_volume_": None, "noise_bounds_": None}

    @available_if(_partial_fit_unavailable)
    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None, *,
                    kappa: float = 0.6) -> Any:
        """Online EM on one batch (see ``EMEstimator.partial_fit``); not with ``noise=True``.

        With ``noise=True`` the estimator has no ``partial_fit`` at all (``hasattr`` is
        False), since the noise density needs the bounding box of all the data.
        """
        self._noise_on()  # validates noise (a non-boolean is a TypeError)
        return super().partial_fit(X, y, sample_weight, kappa=kappa)  # type: ignore[misc]

    def _n_posterior_columns(self) -> int:
        return super()._n_posterior_columns() + int(self._noisy())  # type: ignore[misc]

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each sample, shape (n_samples,); -1 marks noise."""
        labels = super().predict(X)  # type: ignore[misc]
        if self._noisy() and as_external(X) is None:  # lazy blocks ran this method already
            labels = np.where(labels == self._model.n_components, -1, labels)
        return labels

    def sample(self, n_samples: int = 1, random_state: Any = None) -> tuple[Any, np.ndarray]:
        """Draw samples from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            Component of each sample, ascending; with a noise component, the
            uniform draws come last, labelled -1.
        """
        if not self._noisy():
            return super().sample(n_samples, random_state)  # type: ignore[misc]
        model = self._model_for_scoring()  # type: ignore[attr-defined]
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        self._check_sample_size(n_samples)  # type: ignore[attr-defined]
        rng = check_random_state(self.random_state if random_state is None else random_state)
        base, pi0 = model.split(self.params_)  # type: ignore[attr-defined]
        w = np.append((1.0 - pi0) * np.asarray(base.weights), pi0)
        counts = rng.multinomial(n_samples, w / w.sum())
        labels = np.repeat(np.arange(w.shape[0]), counts)
        X = model.sample_components(self.params_, labels, rng)  # type: ignore[attr-defined]
        return X, np.where(labels == w.shape[0] - 1, -1, labels)
