"""What the Gaussian and the Student-t mixture estimators share: model building, attributes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GaussianFamilyEstimator"]


class GaussianFamilyEstimator:
    """Mixin of the estimators over a Gaussian-shaped mixture model (Gaussian, Student-t).

    The model is ``_model_class`` built from the Gaussian hyperparameters
    (``n_components``, ``covariance_type``, ``reg_covar``, ``init_params``,
    ``weights_init``, ``means_init``, ``precisions_init``) and the further
    constructor arguments named in ``_extra_model_args``; the fitted attributes are
    the weights, means, covariances and precisions. Place it after ``NoiseOption``
    and before ``MixtureEstimator`` in the bases.
    """

    _model_class: type
    #: Constructor arguments passed on to ``_model_class`` besides the Gaussian ones.
    _extra_model_args: tuple[str, ...] = ()

    def _make_model(self, n_features: int) -> Any:
        """The model for the current hyperparameters, with the initial arrays checked.

        Parameters
        ----------
        n_features : int
            Width of the data the initial arrays must fit.

        Returns
        -------
        MixtureModel
            An instance of ``_model_class``.
        """
        model = self._model_class(
            self.n_components,  # type: ignore[attr-defined]
            covariance_type=self.covariance_type,  # type: ignore[attr-defined]
            reg_covar=self.reg_covar,  # type: ignore[attr-defined]
            init_params=self.init_params,  # type: ignore[attr-defined]
            weights_init=self.weights_init,  # type: ignore[attr-defined]
            means_init=self.means_init,  # type: ignore[attr-defined]
            precisions_init=self.precisions_init,  # type: ignore[attr-defined]
            **{name: getattr(self, name) for name in self._extra_model_args},
        )
        model.check_init(n_features)
        return model

    def _rebuild_model(self) -> Any:
        return self._with_noise(  # type: ignore[attr-defined]
            self._make_model(self.n_features_in_)  # type: ignore[attr-defined]
        )

    def _fitted_attributes(self, params: Any) -> dict[str, Any]:
        precisions = self._model.strategy.precisions(  # type: ignore[attr-defined]
            params.precisions_cholesky
        )
        precisions.flags.writeable = False
        return {
            "weights_": params.weights,
            "means_": params.means,
            "covariances_": params.covariances,
            "precisions_cholesky_": params.precisions_cholesky,
            "precisions_": precisions,
        }

    def _attribute_setters(self) -> dict[str, Any]:
        """Assigning a covariance, precision or its Cholesky factor sets the other two."""
        strategy = self._model.strategy  # type: ignore[attr-defined]
        k, d = self.n_components, self.n_features_in_  # type: ignore[attr-defined]

        def covariances(params: Any, value: Any) -> Any:
            cov = strategy.check_covariances(value, k, d, "covariances_")
            return params.replace(covariances=cov,
                                  precisions_cholesky=strategy.precisions_cholesky(cov))

        def from_factor(params: Any, pc: Any) -> Any:
            # the factor's own precisions give it back only if it is the canonical one
            # (upper triangular with a positive diagonal, as in scikit-learn)
            with np.errstate(all="ignore"):
                canonical = strategy.precisions_cholesky_from_precisions(
                    strategy.precisions(pc))
            if not np.allclose(canonical, pc, rtol=1e-8, atol=0.0):
                raise ValueError(
                    "precisions_cholesky_ must be the Cholesky factor U of each precision "
                    "(U U^T = precision; upper triangular with a positive diagonal for "
                    "covariance_type='full' or 'tied', positive for 'diag' and 'spherical'), "
                    "as scikit-learn's; set precisions_ or covariances_ to give another form")
            return params.replace(
                precisions_cholesky=pc,
                covariances=strategy.covariances_from_precisions_cholesky(pc))

        def precisions(params: Any, value: Any) -> Any:
            prec = strategy.check_precisions(value, k, d, "precisions_")
            return from_factor(params, strategy.precisions_cholesky_from_precisions(prec))

        setters = super()._attribute_setters()  # type: ignore[misc]
        return {**setters, "covariances_": covariances, "precisions_cholesky_": from_factor,
                "precisions_": precisions}

