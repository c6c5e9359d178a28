"""Conformance checks that every EM model, shipped or custom, should pass.

Each check is a plain function that raises ``AssertionError`` with an
explanation when the model breaks the engine's contract, so it can be called
from pytest, from a hypothesis ``@given`` test, or by hand. :func:`check_model`
runs them all; it takes a model instance or a factory (a class or a function
returning a fresh model):

>>> import numpy as np
>>> from emframe.models.mixtures.gaussian import GaussianMixtureModel
>>> from emframe.testing import check_model
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(0.0, 1.0, (60, 2)), rng.normal(4.0, 1.0, (60, 2))])
>>> check_model(GaussianMixtureModel(2), X)
>>> check_model(lambda: GaussianMixtureModel(2), X, chunks=[X[:50], X[50:]])

The checks:

1. :func:`check_monotone`: the (penalised) log-likelihood never decreases.
2. :func:`check_additive`: E-step statistics on chunks, summed, equal those on the whole.
3. :func:`check_valid_params`: the M-step output passes ``model.check_params``.
4. :func:`check_deterministic`: initialising and fitting twice with one seed gives equal results.
5. :func:`check_complete_data_mle`: with one-hot responsibilities the M-step gives
   the closed-form complete-data MLE (for models that have one).
6. :func:`check_no_mutation`: the E-step and the M-step leave their inputs unchanged.
7. :func:`check_log_likelihood`: ``log_likelihood`` agrees with the E-step's
   log-likelihood, unweighted and weighted.
8. :func:`check_stationary`: at the fixed point EM converges to, the objective
   cannot be increased along its gradient, so the M-step really maximises.
   Monotone EM can still be wrong (an M-step that stops short, or overshoots by
   a constant factor, may converge monotonically to the wrong point); this
   check catches it.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emframe.core.data import DataSource
from emframe.core.engine import run_em
from emframe.core.exceptions import MonotonicityWarning
from emframe.core.loop import monotone_limit
from emframe.core.model import EMModel
from emframe.core.params import Params, Stats, _leaves

__all__ = [
    "check_monotone",
    "check_additive",
    "check_valid_params",
    "check_deterministic",
    "check_complete_data_mle",
    "check_no_mutation",
    "check_log_likelihood",
    "check_stationary",
    "check_model",
]

ModelOrFactory = EMModel | Callable[[], EMModel]


def _factory(model: ModelOrFactory) -> Callable[[], EMModel]:
    """A function returning fresh models: ``model`` itself, or copies of an instance."""
    if isinstance(model, EMModel):
        return lambda: copy.deepcopy(model)
    if not callable(model):
        raise TypeError(
            f"expected an EMModel instance or a function (or class) returning one, got "
            f"{type(model).__name__}"
        )
    return model


def _source(X: Any) -> DataSource:
    return DataSource([X]) if not hasattr(X, "shape") else DataSource(X)


def check_monotone(
    model: EMModel,
    X: Any,
    params: Params | None = None,
    *,
    n_iter: int = 20,
    seed: int = 0,
    rtol: float | None = None,
) -> np.ndarray:
    """Run ``n_iter`` EM iterations and assert the objective never decreases.

    The objective is ``log_likelihood + log_prior``: the penalised
    log-likelihood for MAP models. A decrease larger than ``rtol`` times its
    magnitude (floating-point noise) fails. By default the limit is the fit
    loop's guard's for ``model`` (:func:`emframe.core.loop.monotone_limit`):
    ``MONOTONE_RTOL`` relative, or the precision the model declares with
    ``evaluation_rtol()`` if that is coarser.

    Returns
    -------
    history : ndarray of shape (n_iter + 1,)
    """
    if params is None:
        params = model.initialize(X, np.random.default_rng(seed))
    source = _source(X)
    with warnings.catch_warnings():
        # this check reports drops itself, with the whole history
        warnings.simplefilter("ignore", MonotonicityWarning)
        result = run_em(model, source, params, tol=0.0, max_iter=n_iter, strict=False)
    h = result.loglik_history
    assert np.all(np.isfinite(h)), f"{type(model).__name__}: non-finite log-likelihood {h}"
    drops = h[:-1] - h[1:]
    if rtol is None:
        limit = np.array([monotone_limit(model, p, result.n_samples) for p in h[:-1]])
    else:
        limit = rtol * np.maximum(1.0, np.abs(h[:-1]))
    bad = np.flatnonzero(drops > limit)
    assert bad.size == 0, (
        f"{type(model).__name__}: log-likelihood decreased by {drops[bad[0]]:.3g} at "
        f"iteration {bad[0] + 1} (history {h})"
    )
    return h


def check_additive(
    model: EMModel,
    params: Params,
    whole: Any,
    chunks: Sequence[Any],
    *,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> None:
    """Assert that the E-step on ``chunks``, summed, equals the E-step on ``whole``.

    ``chunks`` must partition ``whole`` (for HMMs, into whole sequences).
    """
    s_whole, ll_whole = model.e_step(params, whole)
    parts = [model.e_step(params, c) for c in chunks]
    s_sum = parts[0][0]
    for s, _ in parts[1:]:
        s_sum = s_sum + s
    ll_sum = sum(ll for _, ll in parts)
    assert isinstance(s_whole, Stats), "e_step must return an emframe.Stats instance"
    assert s_sum.allclose(s_whole, rtol=rtol, atol=atol), (
        f"{type(model).__name__}: statistics are not additive:\nsum of chunks {s_sum}\n"
        f"whole {s_whole}"
    )
    assert np.isclose(ll_sum, ll_whole, rtol=rtol, atol=atol), (
        f"{type(model).__name__}: log-likelihoods are not additive: {ll_sum} != {ll_whole}"
    )


def check_valid_params(model: EMModel, params: Params, X: Any) -> Params:
    """Assert that one E-step + M-step from ``params`` gives valid, finite parameters."""
    stats, _ = model.e_step(params, X)
    new = model.m_step(stats)
    assert type(new) is type(params), (
        f"m_step returned {type(new).__name__}, expected {type(params).__name__}"
    )
    try:
        model.check_params(new)
    except ValueError as exc:  # pragma: no cover - the message is the point
        raise AssertionError(f"{type(model).__name__}: invalid M-step output: {exc}") from exc
    for leaf in _leaves(new):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":
            assert np.all(np.isfinite(leaf)), f"{type(model).__name__}: non-finite parameters"
    return new


def check_deterministic(
    model_factory: ModelOrFactory, X: Any, *, seed: int = 0, n_iter: int = 5
) -> None:
    """Assert that initialising and fitting with one seed twice gives identical results.

    ``model_factory`` is a model instance (copied for each fit) or a function
    returning a fresh model.
    """
    make = _factory(model_factory)
    results = []
    for _ in range(2):
        model = make()
        params = model.initialize(X, np.random.default_rng(seed))
        results.append(run_em(model, _source(X), params, tol=0.0, max_iter=n_iter))
    a, b = results
    assert a.params.allclose(b.params, rtol=0.0), "fits with the same seed differ"
    np.testing.assert_array_equal(a.loglik_history, b.loglik_history)


def check_complete_data_mle(
    model: EMModel,
    stats_from_resp: Callable[[Any, np.ndarray], Stats],
    X: Any,
    labels: np.ndarray,
    n_components: int,
    expected: Params,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> None:
    """Assert that the M-step on one-hot responsibilities gives the closed-form MLE ``expected``."""
    resp = np.zeros((len(labels), n_components))
    resp[np.arange(len(labels)), labels] = 1.0
    got = model.m_step(stats_from_resp(X, resp))
    assert got.allclose(expected, rtol=rtol, atol=atol), (
        f"{type(model).__name__}: M-step on one-hot responsibilities\n{got}\n"
        f"differs from the complete-data MLE\n{expected}"
    )


def check_no_mutation(model: EMModel, params: Params, X: Any) -> None:
    """Assert that the E-step and M-step leave the data and the parameters unchanged."""
    X_before = copy.deepcopy(X)
    p_before = copy.deepcopy(params)
    stats, _ = model.e_step(params, X)
    s_before = copy.deepcopy(stats)
    model.m_step(stats)
    model.log_likelihood(params, X)
    _assert_same(X, X_before, "the data")
    assert params.allclose(p_before, rtol=0.0), "the parameters were modified"
    assert stats.allclose(s_before, rtol=0.0, atol=0.0), "the M-step modified the statistics"


def _assert_same(a: Any, b: Any, what: str) -> None:
    if dataclasses.is_dataclass(a) or isinstance(a, tuple):
        for x, y in zip(_leaves(a), _leaves(b), strict=True):
            _assert_same(x, y, what)
        return
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{what} was modified")


def _accepts_sample_weight(model: EMModel, params: Params, X: Any) -> bool:
    try:
        model.e_step(params, X, sample_weight=np.ones(model.n_samples(X)))
    except TypeError as exc:
        if "sample_weight" in str(exc):
            return False
        raise
    return True


def check_log_likelihood(
    model: EMModel,
    params: Params,
    X: Any,
    *,
    seed: int = 0,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> None:
    """Assert that ``log_likelihood(params, X)`` equals the E-step's log-likelihood.

    The engine monitors the E-step's value during the fit and reports
    ``log_likelihood`` for the result, so the two must be the same function.
    For a model whose ``e_step`` takes ``sample_weight`` the weighted E-step is
    checked as well: unit weights change nothing, and, for row data, integer
    weights equal repeating the rows (statistics and log-likelihood).
    """
    name = type(model).__name__
    stats, ll_e = model.e_step(params, X)
    ll = float(model.log_likelihood(params, X))
    assert np.isclose(ll, float(ll_e), rtol=rtol, atol=atol), (
        f"{name}: log_likelihood(params, X) = {ll!r} but e_step(params, X) returns "
        f"log-likelihood {float(ll_e)!r}; they must agree"
    )
    if not _accepts_sample_weight(model, params, X):
        return
    n = model.n_samples(X)
    s1, ll1 = model.e_step(params, X, sample_weight=np.ones(n))
    assert np.isclose(float(ll1), ll, rtol=rtol, atol=atol) and s1.allclose(
        stats, rtol=rtol, atol=atol
    ), f"{name}: the E-step with unit sample weights differs from the unweighted one"
    counts = np.random.default_rng(seed).integers(0, 4, n)
    try:
        repeated = X[np.repeat(np.arange(n), counts)]
    except (TypeError, IndexError, KeyError):
        return  # not row-indexable data: no repetition to compare with
    sw, llw = model.e_step(params, X, sample_weight=counts.astype(float))
    sr, llr = model.e_step(params, repeated)
    llr_direct = float(model.log_likelihood(params, repeated))
    assert np.isclose(float(llw), llr_direct, rtol=rtol, atol=atol), (
        f"{name}: the E-step with integer sample weights gives log-likelihood {float(llw)!r}, "
        f"but the rows repeated that many times give {llr_direct!r}"
    )
    assert sw.allclose(sr, rtol=rtol, atol=atol), (
        f"{name}: the E-step statistics with integer sample weights differ from those of the "
        "rows repeated that many times"
    )


def _objective(model: EMModel, X: Any, like: Params, fields: tuple[str, ...]) -> Callable:
    def f(v: np.ndarray) -> float:
        try:
            with np.errstate(all="ignore"):
                p = model.params_from_vector(v, like, fields)
                value = float(model.log_likelihood(p, X)) + float(model.log_prior(p))
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return -np.inf
        return value if np.isfinite(value) else -np.inf

    return f


def check_stationary(
    model: EMModel,
    X: Any,
    params: Params | None = None,
    *,
    seed: int = 0,
    max_iter: int = 5000,
    tol: float = 1e-12,
    fields: Sequence[str] | None = None,
    freeze: Sequence[str] = (),
    atol: float = 1e-6,
) -> Params:
    """Assert that EM converges to a stationary point of the (penalised) log-likelihood.

    EM is run from ``params`` (by default ``initialize`` with ``seed``) until the
    objective changes by less than ``tol`` per sample, accelerated by SQUAREM when
    the model declares its constraints (same fixed point). At that fixed point the
    gradient of ``log_likelihood + log_prior`` with respect to the unconstrained
    parameters (:meth:`~emframe.core.model.EMModel.params_to_vector`) must vanish.
    The gradient is taken by central differences; "zero to tolerance" is judged
    in the units that do not depend on the parameters' scale: a line search along
    the gradient must not gain more than ``atol`` nats per sample. An M-step that
    does not maximise (even one that keeps EM monotone) leaves a fixed point
    that is not stationary, and fails.

    Parameters
    ----------
    model : EMModel
        Must support ``params_to_vector`` (declare ``param_constraints``).
    X : data unit
        Choose data whose maximum is interior (no component collapsing, no
        probability going to 0), where the gradient does vanish.
    params : Params, optional
        Starting point of EM.
    seed : int
    max_iter : int
        Iterations allowed to reach the fixed point.
    tol : float
        Per-sample change of the objective that counts as converged.
    fields : sequence of str, optional
        Parameter fields to differentiate; default all of ``param_constraints``
        but those in ``freeze``.
    freeze : sequence of str
        Fields EM holds at their values in ``params`` (the engine's ``freeze``):
        the fixed point is then stationary in the other fields only. Holding a
        few fields fixed can make a model identifiable (for example the loadings
        of a state-space model, free up to a rotation), and EM fast enough for a
        test.
    atol : float
        Largest gain per sample along the gradient.

    Returns
    -------
    Params
        The fixed point.
    """
    name = type(model).__name__
    if params is None:
        params = model.initialize(X, np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonotonicityWarning)  # check_monotone's business
        # SQUAREM reaches the same fixed point as plain EM, in far fewer iterations where
        # EM creeps (heavily missing data, flat likelihoods)
        accelerate = "squarem" if model._constraints() else None
        result = run_em(model, _source(X), params, tol=tol, max_iter=max_iter,
                        freeze=tuple(freeze), accelerate=accelerate)
    assert result.converged, (
        f"{name}: EM did not reach a fixed point in {max_iter} iterations (last change per "
        f"sample {float(np.diff(result.loglik_history)[-1]) / result.n_samples:.3g}); raise "
        "max_iter, or choose data whose maximum is not on the boundary (a variance or a "
        "probability going to 0, degrees of freedom going to infinity)"
    )
    fixed = result.params
    if fields is None:
        fields = tuple(f for f in model._constraints() if f not in freeze)
    fields = tuple(fields)
    v0 = np.asarray(model.params_to_vector(fixed, fields), dtype=float)
    assert np.all(np.isfinite(v0)), (
        f"{name}: the fixed point lies on the boundary of the parameter space (a parameter "
        "at 0 or 1), where the gradient need not vanish; choose other data"
    )
    f = _objective(model, X, fixed, fields)
    f0 = f(v0)
    grad = np.empty_like(v0)
    for i in range(v0.size):
        h = 1e-5 * max(1.0, abs(v0[i]))
        up, down = v0.copy(), v0.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2.0 * h)
    norm = float(np.linalg.norm(grad))
    if norm == 0.0 or not np.isfinite(norm):
        assert np.isfinite(norm), f"{name}: the objective is not finite around the fixed point"
        return fixed
    direction = grad / norm
    scale = max(1.0, float(np.max(np.abs(v0))))
    best, best_t = 0.0, 0.0
    for t in scale * np.logspace(-10, 1, 34):
        gain = f(v0 + t * direction) - f0
        if gain > best:
            best, best_t = gain, t
    n = result.n_samples
    assert best <= atol * n, (
        f"{name}: the fixed point of EM is not a maximum: a step of {best_t:.3g} along the "
        f"gradient (norm {norm:.3g}, {norm / n:.3g} per sample) raises the objective by "
        f"{best:.6g} ({best / n:.3g} per sample). The M-step does not maximise the expected "
        "complete-data log-likelihood (or log_likelihood/log_prior are not the objective it "
        "maximises)"
    )
    return fixed


def check_model(
    model_factory: ModelOrFactory,
    X: Any,
    *,
    chunks: Sequence[Any] | None = None,
    seed: int = 0,
    n_iter: int = 20,
    stationary: bool = True,
) -> None:
    """Run checks 1-4 and 6-8 on one data set.

    Parameters
    ----------
    model_factory : EMModel or callable
        A model instance (deep-copied where a fresh one is needed), or a function
        or class returning a fresh model.
    X : data unit accepted by the model
    chunks : sequence of data units partitioning ``X``, optional
        Defaults to splitting an array in two halves by rows.
    seed : int
    n_iter : int
        Iterations of the monotonicity check.
    stationary : bool
        Run :func:`check_stationary` (skipped for a model without
        ``param_constraints``, which has no unconstrained parametrisation).
    """
    make = _factory(model_factory)
    model = make()
    params = model.initialize(X, np.random.default_rng(seed))
    check_no_mutation(model, params, X)
    check_monotone(model, X, params, n_iter=n_iter)
    check_valid_params(model, params, X)
    if chunks is None:
        half = max(1, len(X) // 2)
        chunks = [X[:half], X[half:]] if len(X) > 1 else [X]
    check_additive(model, params, X, chunks)
    check_deterministic(make, X, seed=seed)
    check_log_likelihood(model, params, X, seed=seed)
    if stationary and model.param_constraints is not None:
        check_stationary(make(), X, params)
