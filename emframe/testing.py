"""Conformance checks that every EM model, shipped or custom, should pass.

Each check is a plain function that raises ``AssertionError`` with an
explanation when the model breaks the engine's contract, so it can be called
from pytest, from a hypothesis ``@given`` test, or by hand::

    from emframe.testing import check_model
    check_model(MyModel(), X, chunks=[X[:10], X[10:]], whole=X)

The checks:

1. :func:`check_monotone`: the (penalised) log-likelihood never decreases.
2. :func:`check_additive`: E-step statistics on chunks, summed, equal those on the whole.
3. :func:`check_valid_params`: the M-step output passes ``model.check_params``.
4. :func:`check_deterministic`: initialising and fitting twice with one seed gives equal results.
5. :func:`check_complete_data_mle`: with one-hot responsibilities the M-step gives
   the closed-form complete-data MLE (for models that have one).
6. :func:`check_no_mutation`: the E-step and the M-step leave their inputs unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emframe.core.data import DataSource
from emframe.core.engine import MONOTONE_RTOL, run_em
from emframe.core.exceptions import MonotonicityWarning
from emframe.core.model import EMModel
from emframe.core.params import Params, Stats, _leaves

__all__ = [
    "check_monotone",
    "check_additive",
    "check_valid_params",
    "check_deterministic",
    "check_complete_data_mle",
    "check_no_mutation",
    "check_model",
]


def check_monotone(
    model: EMModel,
    X: Any,
    params: Params | None = None,
    *,
    n_iter: int = 20,
    seed: int = 0,
    rtol: float = MONOTONE_RTOL,
) -> np.ndarray:
    """Run ``n_iter`` EM iterations and assert the objective never decreases.

    The objective is ``log_likelihood + log_prior``: the penalised
    log-likelihood for MAP models. A decrease larger than ``rtol`` times its
    magnitude (floating-point noise) fails.

    Returns
    -------
    history : ndarray of shape (n_iter + 1,)
    """
    if params is None:
        params = model.initialize(X, np.random.default_rng(seed))
    source = DataSource([X]) if not hasattr(X, "shape") else DataSource(X)
    with warnings.catch_warnings():
        # this check reports drops itself, with the whole history
        warnings.simplefilter("ignore", MonotonicityWarning)
        result = run_em(model, source, params, tol=0.0, max_iter=n_iter, strict=False)
    h = result.loglik_history
    assert np.all(np.isfinite(h)), f"{type(model).__name__}: non-finite log-likelihood {h}"
    drops = h[:-1] - h[1:]
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
    model_factory: Callable[[], EMModel], X: Any, *, seed: int = 0, n_iter: int = 5
) -> None:
    """Assert that initialising and fitting with one seed twice gives identical results."""
    results = []
    for _ in range(2):
        model = model_factory()
        params = model.initialize(X, np.random.default_rng(seed))
        source = DataSource([X]) if not hasattr(X, "shape") else DataSource(X)
        results.append(run_em(model, source, params, tol=0.0, max_iter=n_iter))
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


def check_model(
    model_factory: Callable[[], EMModel],
    X: Any,
    *,
    chunks: Sequence[Any] | None = None,
    seed: int = 0,
    n_iter: int = 20,
) -> None:
    """Run checks 1-4 and 6 on one data set.

    Parameters
    ----------
    model_factory : callable
        Returns a fresh model (called more than once).
    X : data unit accepted by the model
    chunks : sequence of data units partitioning ``X``, optional
        Defaults to splitting an array in two halves by rows.
    """
    model = model_factory()
    params = model.initialize(X, np.random.default_rng(seed))
    check_no_mutation(model, params, X)
    check_monotone(model, X, params, n_iter=n_iter)
    check_valid_params(model, params, X)
    if chunks is None:
        half = max(1, len(X) // 2)
        chunks = [X[:half], X[half:]] if len(X) > 1 else [X]
    check_additive(model, params, X, chunks)
    check_deterministic(model_factory, X, seed=seed)
