"""The generic hidden Markov model: an initial, a transition and an emission component.

As in dynamax, an HMM is a composition: the start and transition probabilities
are handled here once, and everything about the observations is delegated to an
:class:`~emframe.models.hmm_emissions.Emission` strategy object. Exact inference
(forward-backward, Viterbi) comes from :mod:`emframe.hmm_inference`, which sees only
the T×K matrix of emission log-likelihoods.

The data unit the engine sees is a :class:`Sequences`: a batch of whole sequences
(hmmlearn's ``X`` and ``lengths``). Chunking the data means splitting it into
batches of whole sequences, so the statistics stay exactly additive.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from emframe import reparam
from emframe.data import DataSource
from emframe.engine import IterationInfo
from emframe.estimator import EMEstimator
from emframe.exceptions import NotFittedError
from emframe.hmm_inference import forward, forward_backward, validate_lengths, viterbi
from emframe.model import EMModel
from emframe.numerics import safe_log
from emframe.params import Params, Stats
from emframe.validation import check_random_state, check_scalar

from .hmm_emissions import Emission, _check_shape, _check_stochastic_rows

__all__ = ["HMM", "HMMModel", "HMMParams", "HMMStats", "Sequences"]

_BACKENDS = ("auto", "numpy", "numba")
_DECODERS = ("viterbi", "map")


# ----------------------------------------------------------------------------------------
# Data unit
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Sequences:
    """A batch of whole sequences: the HMM data unit.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The sequences, concatenated (not copied, never modified).
    lengths : array-like of int, shape (n_sequences,), optional
        Length of each sequence; they must sum to ``n_samples``. ``None`` means one
        sequence.
    """

    X: np.ndarray
    lengths: np.ndarray | None = None

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "lengths", validate_lengths(self.lengths, X.shape[0]))

    @property
    def n_samples(self) -> int:
        """Total number of steps."""
        return int(self.X.shape[0])

    @property
    def n_sequences(self) -> int:
        return int(self.lengths.shape[0])

    def __len__(self) -> int:
        return self.n_samples

    def bounds(self) -> np.ndarray:
        """``bounds[i]:bounds[i+1]`` are the rows of sequence ``i``; shape (n_sequences + 1,)."""
        return np.concatenate([[0], np.cumsum(self.lengths)])

    def split(self, max_samples: int) -> list[Sequences]:
        """Group consecutive whole sequences into batches of at most ``max_samples`` steps.

        A sequence longer than ``max_samples`` forms a batch of its own (sequences are
        never cut, since the forward-backward recursion runs along a whole sequence).
        """
        b = self.bounds()
        out: list[Sequences] = []
        first = 0
        for i in range(1, self.n_sequences + 1):
            last = i == self.n_sequences
            if last or b[i + 1] - b[first] > max_samples:
                out.append(Sequences(self.X[b[first] : b[i]], self.lengths[first:i]))
                first = i
        return out


# ----------------------------------------------------------------------------------------
# Parameters and statistics
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HMMParams(Params):
    """HMM parameters.

    Attributes
    ----------
    startprob : ndarray of shape (n_components,)
    transmat : ndarray of shape (n_components, n_components)
        ``transmat[i, j] = p(z_{t+1} = j | z_t = i)``; rows sum to one.
    emission : Params
        The emission component's parameters.
    """

    startprob: np.ndarray
    transmat: np.ndarray
    emission: Params


@dataclasses.dataclass(frozen=True)
class HMMStats(Stats):
    """Expected start counts (K,), transition counts (K, K) and the emission statistics."""

    start: np.ndarray
    trans: np.ndarray
    emission: Stats


# ----------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------


def _dirichlet_mode(counts: np.ndarray, alpha: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Row-wise MAP of a categorical under a Dirichlet(alpha) prior, restricted to ``support``.

    With ``alpha == 1`` this is the maximum-likelihood estimate. A row with no
    counts (a state never left) is unused by the likelihood; it becomes uniform over
    its support so the parameters stay stochastic.
    """
    w = np.where(support, counts + (alpha - 1.0), 0.0)
    s = w.sum(axis=-1, keepdims=True)
    uniform = support / support.sum(axis=-1, keepdims=True)
    return np.where(s > 0, w / np.where(s > 0, s, 1.0), uniform)


class HMMModel(EMModel[HMMParams, HMMStats]):
    """An HMM over any emission component, fitted by exact Baum-Welch.

    Parameters
    ----------
    emission : Emission
    n_components : int
        Number of hidden states K.
    startprob_prior : float or array-like of shape (K,), default 1.0
        Dirichlet concentration of ``startprob`` (MAP); 1 means no prior. Must be >= 1.
    transmat_prior : float or array-like of shape (K, K), default 1.0
        Dirichlet concentration of every row of ``transmat``; 1 means no prior.
    initial : mapping, optional
        Given initial values: ``"startprob"``, ``"transmat"`` and emission fields (or
        ``"*"`` for a whole emission ``Params``). Other values are drawn at random by
        :meth:`initialize`. Zeros in a given ``startprob``/``transmat`` define the
        topology: those entries stay exactly zero, with or without a prior.
    frozen : collection of str
        Parameter names held at their initial values: ``"startprob"``,
        ``"transmat"`` and emission field names.
    backend : {"auto", "numpy", "numba"}
        Backend of the inference routines.
    """

    def __init__(
        self,
        emission: Emission,
        n_components: int,
        *,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        initial: Mapping[str, Any] | None = None,
        frozen: Collection[str] = (),
        backend: str = "auto",
    ) -> None:
        if not isinstance(emission, Emission):
            raise TypeError(
                f"emission must be an emframe.models.hmm_emissions.Emission, got "
                f"{type(emission).__name__}"
            )
        check_scalar(n_components, "n_components", (int, np.integer), min_value=1)
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        k = int(n_components)
        self.emission = emission
        self.n_components = k
        self.backend = backend
        self.start_alpha = _check_prior(startprob_prior, (k,), "startprob_prior")
        self.trans_alpha = _check_prior(transmat_prior, (k, k), "transmat_prior")
        self.initial = dict(initial or {})
        self.frozen = tuple(frozen)
        self.start_support = np.ones(k, dtype=bool)
        self.trans_support = np.ones((k, k), dtype=bool)
        if "startprob" in self.initial:
            sp = np.array(self.initial["startprob"], dtype=float)
            _check_shape(sp, (k,), "startprob_")
            _check_stochastic_rows(sp, "startprob_")
            self.initial["startprob"] = sp
            self.start_support = sp > 0
        if "transmat" in self.initial:
            tm = np.array(self.initial["transmat"], dtype=float)
            _check_shape(tm, (k, k), "transmat_")
            _check_stochastic_rows(tm, "transmat_")
            self.initial["transmat"] = tm
            self.trans_support = tm > 0

    # -- engine hooks -------------------------------------------------------------------
    @property
    def engine_freeze(self) -> tuple[str, ...]:
        """Top-level parameter names to hand to the engine's ``freeze``."""
        names = [n for n in ("startprob", "transmat") if n in self.frozen]
        if any(n not in ("startprob", "transmat") for n in self.frozen):
            names.append("emission")
        return tuple(names)

    def n_samples(self, X: Sequences) -> int:
        return X.n_samples

    def initialize(self, X: Sequences, rng: np.random.Generator) -> HMMParams:
        k = self.n_components
        startprob = self.initial.get("startprob", np.full(k, 1.0 / k))
        if "transmat" in self.initial:
            transmat = self.initial["transmat"]
        else:
            # Half sticky, half random: a common, restart-dependent starting point.
            transmat = 0.5 * np.eye(k) + 0.5 * rng.dirichlet(np.ones(k), size=k)
        if "*" in self.initial:
            emission = self.initial["*"]
        else:
            emission = self.emission.initialize(X.X, k, rng)
            given = {f: v for f, v in self.initial.items() if f not in ("startprob", "transmat")}
            if given:
                emission = self.emission.complete_params(emission, given)
        params = HMMParams(startprob, transmat, emission)
        self.check_params(params)
        return params

    def _log_emission(self, params: HMMParams, X: Sequences) -> np.ndarray:
        return self.emission.log_likelihood(params.emission, X.X)

    def posterior(self, params: HMMParams, X: Sequences) -> Any:
        """Forward-backward result (:class:`emframe.hmm_inference.Posterior`)."""
        return forward_backward(
            safe_log(params.startprob), safe_log(params.transmat),
            self._log_emission(params, X), X.lengths, backend=self.backend,
        )

    def e_step(self, params: HMMParams, X: Sequences) -> tuple[HMMStats, float]:
        post = self.posterior(params, X)
        em = self.emission.statistics(params.emission, X.X, post.posteriors)
        return HMMStats(post.start_counts, post.trans_counts, em), float(post.log_likelihood)

    def m_step(self, stats: HMMStats) -> HMMParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(self, stats: HMMStats, fixed: Mapping[str, Any]) -> HMMParams:
        if "startprob" in fixed:
            startprob = fixed["startprob"]
        else:
            startprob = _dirichlet_mode(stats.start, self.start_alpha, self.start_support)
        if "transmat" in fixed:
            transmat = fixed["transmat"]
        else:
            transmat = _dirichlet_mode(stats.trans, self.trans_alpha, self.trans_support)
        if "emission" in fixed:
            held = fixed["emission"]
            names = [n for n in self.frozen if n not in ("startprob", "transmat")]
            if not names or "*" in names:
                emission = held
            else:
                emission = self.emission.constrained_m_step(
                    stats.emission, {n: getattr(held, n) for n in names}
                )
        else:
            emission = self.emission.m_step(stats.emission)
        return HMMParams(startprob, transmat, emission)

    def log_likelihood(self, params: HMMParams, X: Sequences) -> float:
        return float(np.sum(self.sequence_log_likelihood(params, X)))

    def sequence_log_likelihood(self, params: HMMParams, X: Sequences) -> np.ndarray:
        """Log-likelihood of every sequence, shape (n_sequences,)."""
        _, seq_ll = forward(
            safe_log(params.startprob), safe_log(params.transmat),
            self._log_emission(params, X), X.lengths,
        )
        return seq_ll

    def log_prior(self, params: HMMParams) -> float:
        return (
            _dirichlet_log_density(params.startprob, self.start_alpha, self.start_support)
            + _dirichlet_log_density(params.transmat, self.trans_alpha, self.trans_support)
            + float(self.emission.log_prior(params.emission))
        )

    def check_params(self, params: HMMParams) -> None:
        k = self.n_components
        sp = np.asarray(params.startprob)
        tm = np.asarray(params.transmat)
        _check_shape(sp, (k,), "startprob")
        _check_shape(tm, (k, k), "transmat")
        _check_stochastic_rows(sp, "startprob")
        _check_stochastic_rows(tm, "transmat")
        self.emission.check_params(params.emission, k)

    def n_parameters(self, params: HMMParams) -> int:
        n = 0
        if "startprob" not in self.frozen:
            n += int(self.start_support.sum()) - 1
        if "transmat" not in self.frozen:
            n += int(self.trans_support.sum()) - self.n_components
        if "*" in self.frozen:
            return n
        em_frozen = [f for f in self.frozen if f not in ("startprob", "transmat")]
        return n + int(self.emission.n_parameters(params.emission, em_frozen))

    # -- parameters as a vector, for SQUAREM -----------------------------------------------
    @property
    def param_constraints(self) -> dict[str, str]:  # type: ignore[override]
        """Start and transition rows are simplices; the emission uses its own constraints."""
        out = {"startprob": "simplex", "transmat": "simplex"}
        if self.emission.param_constraints is not None:
            out["emission"] = "emission"
        return out

    def _emission_fields(self) -> tuple[str, ...]:
        cons = self.emission.param_constraints or {}
        return tuple(f for f in cons if f not in self.frozen)

    def params_to_vector(self, params: HMMParams, fields: tuple[str, ...]) -> np.ndarray:
        parts = []
        for f in fields:
            if f == "emission":
                cons = self.emission.param_constraints or {}
                parts.append(reparam.to_vector(params.emission, cons, self._emission_fields()))
            else:
                parts.append(reparam.forward(getattr(params, f), "simplex"))
        return np.concatenate(parts) if parts else np.zeros(0)

    def params_from_vector(
        self, vector: np.ndarray, like: HMMParams, fields: tuple[str, ...]
    ) -> HMMParams:
        values: dict[str, Any] = {}
        # An extrapolation far out overflows: raise, so that SQUAREM steps back towards EM.
        with np.errstate(over="raise", invalid="raise"):
            self._from_vector(vector, like, fields, values)
        return like.replace(**values)

    def _from_vector(
        self, vector: np.ndarray, like: HMMParams, fields: tuple[str, ...], values: dict
    ) -> None:
        start = 0
        for f in fields:
            if f == "emission":
                cons = self.emission.param_constraints or {}
                names = self._emission_fields()
                n = sum(reparam.size(getattr(like.emission, g), cons[g]) for g in names)
                em = reparam.from_vector(vector[start : start + n], like.emission, cons, names)
                values["emission"] = self.emission.complete_params(like.emission, em)
            else:
                ref = getattr(like, f)
                n = reparam.size(ref, "simplex")
                # zeros of ``like`` stay zero: extrapolation keeps the topology
                values[f] = reparam.back(vector[start : start + n], ref, "simplex")
            start += n

    # -- inference beyond the engine ----------------------------------------------------
    def decode(self, params: HMMParams, X: Sequences, algorithm: str) -> tuple[float, np.ndarray]:
        """Most likely states: the Viterbi path, or the per-step posterior mode ("map")."""
        if algorithm == "viterbi":
            path, logprob = viterbi(
                safe_log(params.startprob), safe_log(params.transmat),
                self._log_emission(params, X), X.lengths, backend=self.backend,
            )
            return float(logprob), np.asarray(path, dtype=np.int64)
        post = self.posterior(params, X).posteriors
        states = np.argmax(post, axis=1)
        logprob = float(np.sum(safe_log(post[np.arange(post.shape[0]), states])))
        return logprob, states

    def sample(
        self, params: HMMParams, n_samples: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """One sequence of ``n_samples`` steps: observations and states."""
        k = self.n_components
        start_cdf = np.cumsum(params.startprob)
        trans_cdf = np.cumsum(params.transmat, axis=1)
        u = rng.random(n_samples)
        states = np.empty(n_samples, dtype=np.int64)
        states[0] = min(int(np.searchsorted(start_cdf, u[0] * start_cdf[-1], side="right")), k - 1)
        for t in range(1, n_samples):
            row = trans_cdf[states[t - 1]]
            states[t] = min(int(np.searchsorted(row, u[t] * row[-1], side="right")), k - 1)
        return self.emission.sample(params.emission, states, rng), states


def _check_prior(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=float), shape).copy()
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a number or an array broadcastable to shape {shape}, got {value!r}"
        ) from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 1.0):
        raise ValueError(
            f"{name} must be >= 1 everywhere (a Dirichlet concentration; 1 means no prior, "
            f"and below 1 the MAP estimate is not unique), got {value!r}"
        )
    return arr


def _dirichlet_log_density(p: np.ndarray, alpha: np.ndarray, support: np.ndarray) -> float:
    a1 = np.where(support, alpha - 1.0, 0.0)
    if not np.any(a1):
        return 0.0
    # Up to its normalising constant, which does not depend on p.
    return float(np.sum(a1 * safe_log(np.where(a1 != 0, p, 1.0))))


# ----------------------------------------------------------------------------------------
# Estimator
# ----------------------------------------------------------------------------------------


def _store_args(obj: Any, args: Mapping[str, Any]) -> None:
    """Store constructor arguments unchanged (scikit-learn's convention)."""
    for name, value in args.items():
        if name not in ("self", "__class__"):
            setattr(obj, name, value)


class _ParamAttribute:
    """A fitted attribute (``startprob_``, ``means_``, ...) backed by the parameter set.

    Before ``fit`` it stores a user-supplied initial value (hmmlearn style: leave its
    letter out of ``init_params``). After ``fit`` it reads ``params_``, and assigning
    to it replaces that field of ``params_`` (validated), so the attribute and the
    parameters used for scoring can never disagree.
    """

    def __init__(self, field: str, doc: str = "") -> None:
        self.field = field
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._get_param_attribute(self.field, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj._set_param_attribute(self.field, self.name, value)

    def __delete__(self, obj: Any) -> None:
        obj.__dict__.get("_given", {}).pop(self.field, None)


class HMM(EMEstimator):
    """Hidden Markov model over a pluggable emission component, fitted by Baum-Welch.

    Follows hmmlearn's conventions: ``X`` is the concatenation of all sequences and
    ``lengths`` their lengths; initial parameters can be given as attributes
    (``startprob_``, ``transmat_``, emission attributes) and left out of
    ``init_params``; ``params`` lists the parameters EM updates.

    Parameters
    ----------
    emission : Emission
        The emission component (see :mod:`emframe.models.hmm_emissions`).
    n_components : int, default 1
        Number of hidden states.
    startprob_prior : float or array-like of shape (n_components,), default 1.0
        Dirichlet concentration of the start probabilities (>= 1; 1 means no prior).
    transmat_prior : float or array-like of shape (n_components, n_components), default 1.0
        Dirichlet concentration of each transition row (>= 1; 1 means no prior).
    algorithm : {"viterbi", "map"}, default "viterbi"
        Default decoder of :meth:`decode` and :meth:`predict`.
    init_params : str, optional
        Letters of the parameters initialised by ``fit``: ``"s"`` start, ``"t"``
        transitions, and the emission's letters. Parameters whose letter is absent
        are taken from the attributes set before ``fit``; ``""`` means all were
        given. Default: all letters.
    params : str, optional
        Letters of the parameters updated by EM; the others stay at their initial
        values. Default: all letters.
    tol : float, default 1e-4
        Stop when the mean per-step log-likelihood improves by less than this.
    max_iter : int, default 100
        Maximum EM iterations per restart (hmmlearn's ``n_iter``).
    n_init : int, default 1
        Number of restarts; the one with the highest (penalised) log-likelihood is kept.
    random_state : None, int or numpy Generator
    verbose : int, default 0
    warm_start : bool, default False
        Continue from the previous fit's parameters.
    strict : bool, default False
        Raise instead of warning if the log-likelihood ever decreases.
    backend : {"auto", "numpy", "numba"}, default "auto"
        Inference backend; "auto" uses the numba kernels when numba is installed.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emission_params_ : Params
        The emission parameters (named estimators expose them as ``means_`` etc.).
    params_ : HMMParams
    converged_, n_iter_, loglik_history_, n_features_in_
    """

    _estimator_type = "density_estimator"

    startprob_ = _ParamAttribute("startprob", "Start probabilities, shape (n_components,).")
    transmat_ = _ParamAttribute(
        "transmat", "Transition matrix, shape (n_components, n_components); rows sum to one."
    )
    emission_params_ = _ParamAttribute("*", "Emission parameters (a Params instance).")

    def __init__(
        self,
        emission: Emission | None = None,
        n_components: int = 1,
        *,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str | None = None,
        params: str | None = None,
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

    # -- hooks for the named subclasses -------------------------------------------------
    def _make_emission(self, X: Any) -> Emission:
        """The emission component for these hyperparameters.

        ``X`` is the raw training data, or None when a loaded estimator is rebuilt.
        """
        if not isinstance(self.emission, Emission):
            raise TypeError(
                "emission must be an Emission instance (see emframe.models.hmm_emissions), "
                f"got {type(self.emission).__name__}"
            )
        return self.emission

    # -- letters ----------------------------------------------------------------------------
    def _letters(self, emission: Emission) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {"s": ("startprob",), "t": ("transmat",)}
        out.update(emission.field_letters)
        return out

    def _attribute_name(self, field: str) -> str:
        """The attribute holding ``field``; ``emission_params_`` for an emission without one."""
        for name in dir(type(self)):
            attr = getattr(type(self), name, None)
            if isinstance(attr, _ParamAttribute) and attr.field == field:
                return name
        return "emission_params_"

    def _parse_letters(self, value: str | None, name: str, emission: Emission) -> set[str]:
        letters = self._letters(emission)
        if value is None:
            return set(letters)
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string of letters, got {value!r}")
        unknown = sorted(set(value) - set(letters))
        if unknown:
            valid = ", ".join(
                f"{c!r} ({'/'.join(self._attribute_name(f) for f in fs)})"
                for c, fs in letters.items()
            )
            raise ValueError(
                f"unknown letter(s) {unknown} in {name}={value!r}; valid letters for "
                f"{type(self).__name__} are {valid}"
            )
        return set(value)

    # -- attributes -------------------------------------------------------------------------
    def _get_param_attribute(self, field: str, name: str) -> Any:
        if "params_" in self.__dict__:
            p = self.params_
            if field in ("startprob", "transmat"):
                return getattr(p, field)
            if field == "*":
                return p.emission
            value = getattr(p.emission, field)
            model = self.__dict__.get("_model")  # absent while emframe.load rebuilds it
            return value if model is None else model.emission.to_attribute(field, value)
        given = self.__dict__.get("_given", {})
        if field in given:
            return given[field]
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r}: fit the model, or set it "
            "before fit to give an initial value"
        )

    def _set_param_attribute(self, field: str, name: str, value: Any) -> None:
        if "params_" not in self.__dict__:
            # Validated at fit time, when n_components and n_features are known.
            frozen = np.array(value, dtype=float) if not isinstance(value, Params) else value
            if isinstance(frozen, np.ndarray):
                frozen.flags.writeable = False
            self.__dict__.setdefault("_given", {})[field] = frozen
            return
        model: HMMModel = self._model
        p = self.params_
        if field in ("startprob", "transmat"):
            new = p.replace(**{field: np.array(value, dtype=float)})
        elif field == "*":
            new = p.replace(emission=value)
        else:
            conv = model.emission.from_attribute(
                field, value, model.n_components, self.n_features_in_
            )
            new = p.replace(emission=model.emission.complete_params(p.emission, {field: conv}))
        try:
            model.check_params(new)
        except ValueError as exc:
            raise ValueError(f"invalid value for {name}: {exc}") from None
        self.params_ = new

    # -- validation ---------------------------------------------------------------------------
    def _validate_hyper(self) -> None:
        check_scalar(self.n_components, "n_components", (int, np.integer), min_value=1)
        if self.algorithm not in _DECODERS:
            raise ValueError(f"algorithm must be one of {_DECODERS}, got {self.algorithm!r}")
        if self.backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {self.backend!r}")

    def _validate_sequences(self, X: Any, lengths: Any, emission: Emission) -> Sequences:
        X = emission.check_X(X)
        return Sequences(X, validate_lengths(lengths, X.shape[0]))

    def _check_data(self, X: Any, lengths: Any) -> Sequences:
        """Validate data for scoring against the fitted model."""
        self._check_is_fitted()
        seqs = self._validate_sequences(X, lengths, self._model.emission)
        self._check_n_features(seqs.X, reset=False)
        return seqs

    def _build_model(self, X: Any) -> HMMModel:
        # The model is built from the raw data and lengths by _build (in fit/partial_fit);
        # the engine's hooks only ask for the one being built.
        model = self.__dict__.get("_model_building")
        if model is None:
            raise NotImplementedError("HMM estimators build their model in fit")
        return model

    def _is_warm(self) -> bool:
        return bool(getattr(self, "warm_start", False)) and "params_" in self.__dict__

    def _new_model(
        self, emission: Emission, initial: Mapping[str, Any], update_letters: set[str]
    ) -> HMMModel:
        letters = self._letters(emission)
        frozen = [f for c, fs in letters.items() if c not in update_letters for f in fs]
        return HMMModel(
            emission, int(self.n_components),
            startprob_prior=self.startprob_prior, transmat_prior=self.transmat_prior,
            initial=initial, frozen=frozen, backend=self.backend,
        )

    def _build(self, X_raw: Any, lengths: Any) -> tuple[HMMModel, Sequences]:
        self._validate_hyper()
        emission = self._make_emission(X_raw)
        seqs = self._validate_sequences(X_raw, lengths, emission)
        k = int(self.n_components)
        init_letters = self._parse_letters(self.init_params, "init_params", emission)
        update_letters = self._parse_letters(self.params, "params", emission)
        letters = self._letters(emission)
        initial: dict[str, Any] = {}
        if self._is_warm():
            p = self.params_
            initial = {"startprob": p.startprob, "transmat": p.transmat, "*": p.emission}
            all_given = True
        else:
            all_given = not (init_letters & set(letters))
            for letter, fields in letters.items():
                if letter in init_letters:
                    continue
                for field in fields:
                    name = self._attribute_name(field)
                    try:
                        value = getattr(self, name)
                        if name == "emission_params_" and field != "*":
                            value = getattr(value, field)  # a field of a custom emission
                    except AttributeError:
                        raise ValueError(
                            f"init_params={self.init_params!r} leaves out {letter!r}, so "
                            f"{name} must be set before fit (or add {letter!r} to init_params)"
                        ) from None
                    if field in ("startprob", "transmat", "*"):
                        initial[field] = value
                    else:
                        initial[field] = emission.from_attribute(
                            field, value, k, seqs.X.shape[1]
                        )
        model = self._new_model(emission, initial, update_letters)
        # All given (or warm): one run from those values, checked together; restarts
        # would all coincide.
        self._all_given = model.initialize(seqs, np.random.default_rng(0)) if all_given else None
        return model, seqs

    def _rebuild_model(self) -> HMMModel:
        """The model of a loaded estimator, rebuilt from its hyperparameters and ``params_``.

        The topology (which start/transition entries may be non-zero) is taken from the
        zeros of the fitted ``startprob_`` and ``transmat_``.
        """
        emission = self._make_emission(None)
        p = self.params_
        initial = {"startprob": p.startprob, "transmat": p.transmat, "*": p.emission}
        return self._new_model(
            emission, initial, self._parse_letters(self.params, "params", emission)
        )

    @property
    def freeze(self) -> tuple[str, ...]:
        """Engine ``freeze`` names derived from ``params`` (read-only)."""
        model = self.__dict__.get("_model_building") or self.__dict__.get("_model")
        return model.engine_freeze if model is not None else ()

    def _warm_params(self) -> Params | None:
        # Set by _build: the given (or warm-start) parameters, else None (random restarts).
        return self.__dict__.get("_all_given")

    # -- fitting --------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        lengths: Any = None,
        *,
        chunk_size: int | None = None,
        callbacks: Sequence[Callable[[IterationInfo], Any]] | None = None,
        **engine_options: Any,
    ) -> HMM:
        """Estimate the parameters by Baum-Welch (EM).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            All sequences, concatenated.
        lengths : array-like of int, shape (n_sequences,), optional
            Length of each sequence (summing to ``n_samples``); default one sequence.
        chunk_size : int, optional
            Run the E-step on batches of whole sequences of at most this many steps
            (a longer sequence is its own batch) and sum the statistics; the result
            equals the unchunked fit.
        callbacks : sequence of callables, optional
            Called with an :class:`~emframe.engine.IterationInfo` after every
            iteration; returning ``True`` stops.
        **engine_options
            Passed to the engine (:func:`~emframe.engine.fit_em`): ``accelerate="squarem"``
            for SQUAREM steps (still monotone); ``method="online"`` with ``kappa`` for one
            pass of online EM over the batches of ``chunk_size``.

        Returns
        -------
        self
        """
        if chunk_size is not None:
            check_scalar(chunk_size, "chunk_size", (int, np.integer), min_value=1)
        model, seqs = self._build(X, lengths)
        self._check_n_features(seqs.X, reset=True)
        chunks = seqs.split(int(chunk_size)) if chunk_size is not None else [seqs]
        self._model_building = model
        try:
            # A fully-given start is never restarted; a warm start continues from params_.
            self._run(model, DataSource(chunks), callbacks, **engine_options)
        finally:
            del self._model_building
        self.__dict__.pop("_given", None)
        return self

    def partial_fit(self, X: Any, lengths: Any = None, *, kappa: float = 0.6) -> HMM:
        """Update the fit with one batch of whole sequences by online (stepwise) EM.

        The first call initialises from the batch (or from given/fitted parameters, as
        ``fit`` does); every call blends the batch's statistics into a running average
        with step size ``(t + 2) ** -kappa`` and takes an M-step. Unlike ``fit``, the
        log-likelihood is not guaranteed to increase from batch to batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of sequences, concatenated.
        lengths : array-like of int, optional
        kappa : float in (0.5, 1]

        Returns
        -------
        self
        """
        if getattr(self, "_online_state", None) is not None:
            return self._partial_fit_unit(self._check_data(X, lengths), None, kappa)
        model, seqs = self._build(X, lengths)
        self._check_n_features(seqs.X, reset=True)
        self._model_building = model
        try:
            return self._partial_fit_unit(seqs, None, kappa)
        finally:
            del self._model_building

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, X: Any, lengths: Any = None) -> float:
        """Total log-likelihood of ``X`` (hmmlearn's convention, not a per-sample mean).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int, shape (n_sequences,), optional

        Returns
        -------
        float
        """
        seqs = self._check_data(X, lengths)
        return self._model.log_likelihood(self.params_, seqs)

    def log_likelihood(self, X: Any, lengths: Any = None) -> float:
        """Total log-likelihood of ``X``; the same as :meth:`score`."""
        return self.score(X, lengths)

    def score_sequences(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Log-likelihood of every sequence, shape (n_sequences,)."""
        seqs = self._check_data(X, lengths)
        return self._model.sequence_log_likelihood(self.params_, seqs)

    def score_samples(self, X: Any, lengths: Any = None) -> tuple[float, np.ndarray]:
        """Total log-likelihood and state posteriors (hmmlearn's convention).

        Returns
        -------
        log_prob : float
            Total log-likelihood of ``X``.
        posteriors : ndarray of shape (n_samples, n_components)
            ``p(z_t = k | the whole sequence holding t)``.
        """
        seqs = self._check_data(X, lengths)
        post = self._model.posterior(self.params_, seqs)
        return float(post.log_likelihood), post.posteriors

    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray:
        """State posteriors, shape (n_samples, n_components)."""
        return self.score_samples(X, lengths)[1]

    def decode(
        self, X: Any, lengths: Any = None, algorithm: str | None = None
    ) -> tuple[float, np.ndarray]:
        """Most likely state sequence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int, optional
        algorithm : {"viterbi", "map"}, optional
            Default: the estimator's ``algorithm``. "viterbi" finds the jointly most
            probable path; "map" takes the most probable state at every step.

        Returns
        -------
        log_prob : float
            For "viterbi", ``log p(path, X)``. For "map", the sum of the log posterior
            probabilities of the chosen states (hmmlearn sums the probabilities
            themselves, which is not a log-probability).
        states : ndarray of int, shape (n_samples,)
        """
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in _DECODERS:
            raise ValueError(f"algorithm must be one of {_DECODERS}, got {algorithm!r}")
        seqs = self._check_data(X, lengths)
        return self._model.decode(self.params_, seqs, algorithm)

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Most likely states (with the estimator's ``algorithm``), shape (n_samples,)."""
        return self.decode(X, lengths)[1]

    def bic(self, X: Any, lengths: Any = None) -> float:
        """Bayesian information criterion (lower is better); n = number of steps."""
        seqs = self._check_data(X, lengths)
        ll = self._model.log_likelihood(self.params_, seqs)
        return -2.0 * ll + self.n_parameters() * math.log(seqs.n_samples)

    def aic(self, X: Any, lengths: Any = None) -> float:
        """Akaike information criterion (lower is better)."""
        seqs = self._check_data(X, lengths)
        return -2.0 * self._model.log_likelihood(self.params_, seqs) + 2.0 * self.n_parameters()

    def sample(
        self, n_samples: int = 1, random_state: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sequence from the fitted model.

        Parameters
        ----------
        n_samples : int
            Number of steps.
        random_state : None, int or Generator, optional
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        states : ndarray of int, shape (n_samples,)
        """
        if "params_" not in self.__dict__:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. To sample from parameters you "
                "chose, set them as attributes and fit with init_params='' and max_iter=0 "
                "(zero iterations keep them as they are)."
            )
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        return self._model.sample(self.params_, int(n_samples), rng)

