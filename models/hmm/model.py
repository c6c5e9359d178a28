"""The generic hidden Markov model: an initial, a transition and an emission component.

As in dynamax, an HMM is a composition: the start and transition probabilities
are handled here once, and everything about the observations is delegated to an
:class:`~emframe.models.hmm.emissions.Emission` strategy object. Exact inference
(forward-backward, Viterbi) comes from :mod:`emframe.inference.hmm`, which sees only
the T×K matrix of emission log-likelihoods.

The data unit the engine sees is a :class:`Sequences`: a batch of whole sequences
(hmmlearn's ``X`` and ``lengths``). Chunking the data means splitting it into
batches of whole sequences, so the statistics stay exactly additive.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
from emframe.models.hmm.emissions.base import Emission, _check_shape, _check_stochastic_rows
from emframe.models.hmm.labels import check_labels_possible, check_range, check_states, clamp
from scipy.optimize import linear_sum_assignment

from emframe.core import reparam
from emframe.core.model import EMModel
from emframe.core.numerics import safe_log
from emframe.core.params import Params, Stats
from emframe.core.validation import check_scalar
from emframe.inference.hmm import forward_backward, uses_numba, validate_lengths, viterbi
from emframe.inference.hmm.common import _total

__all__ = ["HMMModel", "HMMParams", "HMMStats", "Sequences"]


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
    states : array-like of int, shape (n_samples,), optional
        Known states: a state index at labelled steps, -1 where the state is unknown
        (see :mod:`emframe.models.hmm.labels`). They travel with the rows, so a batch
        of sequences keeps its own labels.
    """

    X: np.ndarray
    lengths: np.ndarray | None = None
    states: np.ndarray | None = None

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "lengths", validate_lengths(self.lengths, X.shape[0]))
        if self.states is not None:
            object.__setattr__(self, "states", check_states(self.states, X.shape[0]))

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

    # -- the engine's sampling protocol (emframe.core.data.unit_sizes): whole sequences --
    def unit_sizes(self) -> np.ndarray:
        """Length of every sequence: the units an initialisation sample is drawn in."""
        return self.lengths

    def take_units(self, indices: np.ndarray) -> Sequences:
        """The sequences at the sorted ``indices``, in their order, with their known states."""
        b = self.bounds()
        idx = np.asarray(indices, dtype=np.int64)
        rows = np.concatenate([np.arange(b[i], b[i + 1]) for i in idx]) if idx.size else []
        rows = np.asarray(rows, dtype=np.int64)
        states = None if self.states is None else self.states[rows]
        return Sequences(self.X[rows], self.lengths[idx], states)

    @classmethod
    def concatenate_units(cls, parts: list[Sequences]) -> Sequences:
        """One batch holding the sequences of ``parts`` (and their known states), in order."""
        states = None
        if any(p.states is not None for p in parts):
            states = np.concatenate([np.full(p.n_samples, -1) if p.states is None else p.states
                                     for p in parts])
        return cls(np.concatenate([p.X for p in parts]),
                   np.concatenate([p.lengths for p in parts]), states)

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
                rows = slice(b[first], b[i])
                states = None if self.states is None else self.states[rows]
                out.append(Sequences(self.X[rows], self.lengths[first:i], states))
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
                f"emission must be an emframe.models.hmm.emissions.Emission, got "
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
    def prior_size(self) -> float | None:  # type: ignore[override]
        """The emission's (see ``EMModel.with_prior_size``); n counts time steps."""
        return self.emission.prior_size

    @property
    def scales_prior_with_data(self) -> bool:
        return self.emission.scales_prior_with_data

    def with_prior_size(self, prior_size: float | None) -> HMMModel:
        """A copy whose emission has its prior attached to ``prior_size`` time steps."""
        model = copy.copy(self)
        model.emission = self.emission.with_prior_size(prior_size)
        return model

    def data_warnings(self, X: Sequences) -> list[Warning]:
        """The emission's warnings about the observations (``EMModel.data_warnings``)."""
        return self.emission.data_warnings(X.X)

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
            elif X.states is not None:
                emission = self._match_labels(emission, X)
        params = HMMParams(startprob, transmat, emission)
        self.check_params(params)
        return params

    def _match_labels(self, emission: Params, X: Sequences) -> Params:
        """Random initial emission parameters, their states renumbered to fit the labels.

        Each labelled state j takes the initial state that best explains the steps
        labelled j (an assignment maximising the total log-likelihood). A random start
        whose states are right but numbered otherwise would otherwise leave every label
        on the wrong state, a local optimum EM cannot leave. Emissions that cannot
        renumber their states are left as they are.
        """
        rows = np.flatnonzero(X.states >= 0)
        if not rows.size:
            return emission
        labels = X.states[rows]
        check_range(X.states, self.n_components)
        log_em = self.emission.log_likelihood(emission, X.X[rows])
        present = np.unique(labels)
        score = np.stack([log_em[labels == j].sum(axis=0) for j in present])  # (J, K)
        score = np.where(np.isfinite(score), score, -1e300)
        label_idx, state_idx = linear_sum_assignment(score, maximize=True)
        order = np.full(self.n_components, -1)
        order[present[label_idx]] = state_idx
        rest = [s for s in range(self.n_components) if s not in set(state_idx.tolist())]
        order[order < 0] = rest
        try:
            return self.emission.permute_states(emission, order)
        except NotImplementedError:
            return emission

    def _log_emission(self, params: HMMParams, X: Sequences) -> np.ndarray:
        # Known states condition the chain: every other state is impossible at that step.
        return clamp(self.emission.log_likelihood(params.emission, X.X), X.states)

    def check_labels(self, X: Sequences, params: HMMParams | None = None) -> None:
        """Raise ``ValueError`` if the labels of ``X`` are out of range or have zero probability.

        Without ``params`` the zeros that define the topology (of a given initial
        ``startprob``/``transmat``) are checked; with ``params``, their zeros.
        """
        if X.states is None:
            return
        if params is None:
            start_ok, trans_ok, where = self.start_support, self.trans_support, (
                "the model's topology (the zeros of the initial startprob_/transmat_)"
            )
        else:
            start_ok, trans_ok = params.startprob > 0, params.transmat > 0
            where = "the fitted model"
        check_labels_possible(start_ok, trans_ok, X.states, X.lengths, where)

    def posterior(self, params: HMMParams, X: Sequences) -> Any:
        """Forward-backward result (:class:`emframe.inference.hmm.Posterior`)."""
        return forward_backward(
            safe_log(params.startprob), safe_log(params.transmat),
            self._log_emission(params, X), X.lengths, backend=self.backend,
        )

    def e_step(self, params: HMMParams, X: Sequences) -> tuple[HMMStats, float]:
        fused = self._fused_e_step(params, X)
        if fused is not None:
            stats, seq_ll = fused
            return stats, _total(seq_ll)
        post = self.posterior(params, X)
        em = self.emission.statistics(params.emission, X.X, post.posteriors)
        return HMMStats(post.start_counts, post.trans_counts, em), float(post.log_likelihood)

    def _fused_e_step(
        self, params: HMMParams, X: Sequences
    ) -> tuple[HMMStats, np.ndarray] | None:
        """The emission's compiled E-step (statistics, per-sequence log-likelihoods), or None.

        Only with the numba backend and without labelled states. Sequences the compiled
        pass reports as failed (its scaled recursion lost precision) are recomputed by
        the reference path, whose log-space fallback then takes over.
        """
        if X.states is not None or not uses_numba(self.backend):
            return None
        res = self.emission.fused_e_step(
            params.emission, X.X, params.startprob, params.transmat, X.lengths
        )
        if res is None:
            return None
        start, trans, em, seq_ll, failed = res
        if failed.any():
            bad = np.flatnonzero(failed)
            sub = X.take_units(bad)
            post = self.posterior(params, sub)
            em = em + self.emission.statistics(params.emission, sub.X, post.posteriors)
            start = start + post.start_counts
            trans = trans + post.trans_counts
            seq_ll = seq_ll.copy()
            seq_ll[bad] = post.seq_log_likelihood
        return HMMStats(start, trans, em), seq_ll

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
        # summed as the E-step sums them (exactly), so both give the same number
        return _total(self.sequence_log_likelihood(params, X))

    def sequence_log_likelihood(self, params: HMMParams, X: Sequences) -> np.ndarray:
        """Log-likelihood of every sequence, shape (n_sequences,).

        By the E-step's own scaled forward-backward (with its checks and log-space
        fallback): several times faster than the log-space forward pass, and the same
        numbers as the E-step's log-likelihood.
        """
        fused = self._fused_e_step(params, X)
        if fused is not None:
            return fused[1]
        return self.posterior(params, X).seq_log_likelihood

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

    def n_features_of(self, params: HMMParams) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return self.emission.n_features_of(params.emission)

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
        self, params: HMMParams, n_samples: int, rng: np.random.Generator,
        currstate: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One sequence of ``n_samples`` steps: observations and states (see :meth:`chain`)."""
        states = self.chain(params, n_samples, rng, currstate)
        return self.emission.sample(params.emission, states, rng), states

    def chain(self, params: HMMParams, n_samples: int, rng: np.random.Generator,
              currstate: int | None = None) -> np.ndarray:
        """One path of the hidden chain, ``n_samples`` steps, shape (n_samples,).

        It starts in ``currstate`` when given (hmmlearn's convention: continuing a path
        that ended in that state), else in a state drawn from ``startprob``.
        """
        k = self.n_components
        start_cdf = np.cumsum(params.startprob)
        trans_cdf = np.cumsum(params.transmat, axis=1)
        u = rng.random(n_samples)
        states = np.empty(n_samples, dtype=np.int64)
        if currstate is None:
            first = int(np.searchsorted(start_cdf, u[0] * start_cdf[-1], side="right"))
        else:
            first = int(currstate)
        states[0] = min(first, k - 1)
        for t in range(1, n_samples):
            row = trans_cdf[states[t - 1]]
            states[t] = min(int(np.searchsorted(row, u[t] * row[-1], side="right")), k - 1)
        return states


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

