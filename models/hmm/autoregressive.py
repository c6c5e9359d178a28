"""The autoregressive HMM estimator (a vector autoregression switching with the state)."""

from __future__ import annotations

from typing import Any

import numpy as np
from emframe.models.hmm._attributes import _ParamAttribute, _store_args
from emframe.models.hmm.emissions import Emission
from emframe.models.hmm.emissions.autoregressive import AutoRegressiveEmission, lagged_rows
from emframe.models.hmm.estimator import HMM
from emframe.models.hmm.estimators import _COMMON_DOC
from emframe.models.hmm.handset import check_sequence_size
from emframe.models.hmm.labels import check_states
from emframe.models.hmm.model import Sequences

from emframe.core.validation import check_array, check_random_state, check_scalar
from emframe.inference.hmm import validate_lengths

__all__ = ["AutoRegressiveHMM"]


class AutoRegressiveHMM(HMM):
    __doc__ = f"""HMM whose states are vector autoregressions (a Markov-switching VAR).

    In state k, ``x_t = A_k1 x_{{t-1}} + ... + A_kp x_{{t-p}} + b_k + e_t`` with
    ``e_t ~ N(0, Sigma_k)``, ``p = order``.

    **The first ``order`` steps of every sequence are conditioned on.** They serve
    only as lags: the likelihood of a sequence ``x_1 .. x_T`` is
    ``p(x_{{p+1}}, ..., x_T | x_1, ..., x_p)``, and the hidden chain starts at step
    ``p + 1`` (``startprob_`` is the distribution of ``z_{{p+1}}``). Every sequence must
    therefore be longer than ``order``. Accordingly, :meth:`predict`,
    :meth:`predict_proba` and :meth:`decode` return one row per *modelled* step,
    ``n_samples - order * n_sequences`` in all (the steps ``p+1 .. T`` of each
    sequence, concatenated), :meth:`score` is the conditional log-likelihood, and BIC
    counts the modelled steps. ``states`` (known states, -1 where unknown) may be given
    per row of X (then the first ``order`` steps of each sequence must be -1) or per
    modelled step.

    The M-step is closed form: weighted least squares per state for ``A_k`` and
    ``b_k``, then the covariance of the residuals, the MAP estimate under the
    ``reg_covar`` prior as in :class:`GaussianHMM`. With every ``A_k`` held at zero
    (``params`` without ``"a"``) the model is a full-covariance Gaussian HMM of the steps
    after the first ``order``.
    Missing values (NaN) are not supported.

    Parameters
    ----------
    n_components : int, default 1
        Number of hidden states.
    order : int, default 1
        Number of lags p (>= 1).
    covariance_type : {{"full", "diag", "spherical", "tied"}}, default "full"
        Structure of the noise covariances.
    reg_covar : float, default 1e-6
        The prior on the noise covariances, as in :class:`GaussianHMM`: about
        ``reg_covar`` added to the variances of balanced states, exactly the MAP with
        ``lambda = reg_covar * n / m`` for n modelled steps (``prior_size_``) and m = K
        (1 when tied).
    {_COMMON_DOC}

    Letters: ``"s"`` startprob_, ``"t"`` transmat_, ``"a"`` coefs_, ``"b"``
    intercepts_, ``"c"`` covars_.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    coefs_ : ndarray of shape (n_components, order, n_features, n_features)
        ``coefs_[k, l - 1]`` multiplies ``x_{{t-l}}`` in state k.
    intercepts_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray
        Noise covariances in the covariance_type's shape, as in GaussianHMM.
    converged_, n_iter_, loglik_history_, params_, prior_size_
    """

    coefs_ = _ParamAttribute(
        "coefs", "Lag coefficients, shape (n_components, order, n_features, n_features)."
    )
    intercepts_ = _ParamAttribute("intercepts", "Intercepts, shape (n_components, n_features).")
    _width_field = "intercepts"
    covars_ = _ParamAttribute("covars", "Noise covariances in the covariance_type's shape.")

    def __init__(
        self,
        n_components: int = 1,
        order: int = 1,
        covariance_type: str = "full",
        *,
        reg_covar: float = 1e-6,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str = "stabc",
        params: str = "stabc",
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

    def _make_emission(self, X: Any) -> AutoRegressiveEmission:
        return AutoRegressiveEmission(self.order, self.covariance_type, self.reg_covar)

    def _validate_sequences(
        self, X: Any, lengths: Any, emission: Emission, states: Any = None
    ) -> Sequences:
        # inf refused there, NaN here with the choices; masked entries keep their message
        X = check_array(X, allow_nan=not np.ma.isMaskedArray(X))
        p = emission.order  # type: ignore[attr-defined]
        _refuse_missing(X, p)
        lengths = validate_lengths(lengths, X.shape[0])
        rows, steps = lagged_rows(X, lengths, p)
        if states is not None:
            states = self._modelled_states(states, X.shape[0], lengths, rows.shape[0], p)
        return Sequences(rows, steps, states)

    @staticmethod
    def _modelled_states(
        states: Any, n_samples: int, lengths: np.ndarray, n_steps: int, p: int
    ) -> np.ndarray:
        """Labels of the modelled steps, from labels per row of X or per modelled step."""
        if np.shape(states) == (n_steps,):
            return check_states(states, n_steps)
        if np.shape(states) != (n_samples,):
            raise ValueError(
                f"states must have one label per row of X, shape ({n_samples},), or one per "
                f"modelled step (the first order={p} steps of each sequence have no state), "
                f"shape ({n_steps},); got shape {np.shape(states)}"
            )
        s = check_states(states, n_samples)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        lag_rows = (starts[:, None] + np.arange(p)).ravel()
        bad = lag_rows[s[lag_rows] >= 0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"states[{i}] = {int(s[i])} labels one of the first order={p} steps of a "
                "sequence, which are conditioned on and have no hidden state; give -1 there"
            )
        keep = np.ones(n_samples, dtype=bool)
        keep[lag_rows] = False
        return s[keep]

    def _unit_n_features(self, seqs: Sequences, emission: Emission) -> int:
        return int(seqs.X.shape[1]) // (emission.order + 1)  # type: ignore[attr-defined]

    def sample(
        self, n_samples: int = 1, random_state: Any = None, currstate: int | None = None, *,
        initial: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sequence from the fitted model, or from parameters set by hand.

        Parameters
        ----------
        n_samples : int
            Number of rows of X, including the ``order`` initial rows (> order).
        random_state : None, int or Generator, optional
            Defaults to the estimator's ``random_state``.
        currstate : int, optional
            The state of the first modelled step; default drawn from ``startprob_``.
        initial : array-like of shape (order, n_features), optional
            The first ``order`` rows (the lags of the first modelled step), oldest
            first. Default: zeros.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        states : ndarray of int, shape (n_samples - order,)
            The state of every modelled step.
        """
        model, params = self._fitted_or_given()
        emission = model.emission
        p = emission.order
        d = emission.n_features_of(params.emission)
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=p + 1)
        check_sequence_size(model, params, n_samples)
        currstate = self._check_currstate(currstate)
        if initial is None:
            initial = np.zeros((p, d))
        initial = check_array(initial, "initial")
        if initial.shape != (p, d):
            raise ValueError(
                f"initial must have shape (order, n_features) = ({p}, {d}), got {initial.shape}"
            )
        rng = check_random_state(self.random_state if random_state is None else random_state)
        states = model.chain(params, int(n_samples) - p, rng, currstate)
        X = emission.sample_sequence(params.emission, states, initial, rng)
        return X, states


def _refuse_missing(X: np.ndarray, order: int) -> None:
    """A clear error for NaN, naming the estimators that accept it as missing."""
    nan = np.isnan(X)
    if nan.any():
        i, j = (int(v) for v in np.argwhere(nan)[0])
        raise ValueError(
            f"AutoRegressiveHMM does not accept missing values, but X contains NaN (first "
            f"at row {i}, column {j}): a missing row would also be a lag of the next {order} "
            "step(s). Impute or drop them first, or use an estimator that takes NaN as "
            "missing: GaussianHMM, GMMHMM, PoissonHMM or CategoricalHMM (hidden states), "
            "LinearGaussianSSM (linear autoregressive dynamics of a hidden state), or "
            "MissingDataGaussianMixture (no time structure)"
        )
