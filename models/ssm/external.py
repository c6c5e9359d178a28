"""LinearGaussianSSM's results on data held elsewhere (Dask): lazy, partition by partition.

Each partition holds whole sequences (see :func:`~emframe.models.hmm.external.lazy`), so
every result equals the in-memory one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from emframe.models.hmm.external import lazy
from emframe.models.ssm.predict import check_horizon

from emframe.core.executors import as_external
from emframe.inference.hmm import validate_lengths


def lazy_results(est: Any, method: Any, Y: Any, lengths: Any, *ranks: int, **kwargs: Any
                 ) -> Any:
    """``method`` on a Dask array, lazily; outputs of rank 0, 1 or 2 in the state
    dimension, or -1 for one value per observed variable. None for in-memory data."""
    if as_external(Y) is None:
        return None
    est._check_is_fitted()
    m, p = int(est.n_dim_state), int(est.n_features_in_)
    outs = [((p,) if r < 0 else (m,) * r, np.float64) for r in ranks]
    return lazy(est, method, Y, lengths, None, *outs, **kwargs)


class _ForecastRows:
    """``forecast`` on a partition, each sequence's horizon as rows (picklable)."""

    def __init__(self, est: Any, n_steps: int, states: bool) -> None:
        self.est, self.n_steps, self.states = est, n_steps, states

    def __call__(self, Y: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.est.forecast(Y, self.n_steps, lengths, states=self.states)
        return tuple(a.reshape((-1,) + a.shape[2:]) for a in out)


def lazy_forecast(est: Any, Y: Any, n_steps: int, lengths: Any, states: bool) -> Any:
    """:meth:`LinearGaussianSSM.forecast` of a Dask array, lazily; None in memory."""
    ext = as_external(Y)
    if ext is None:
        return None
    est._check_is_fitted()
    lens = validate_lengths(ext.to_local(lengths), ext.n_rows())
    check_horizon(est._system(), len(lens), n_steps)
    m, p = int(est.n_dim_state), int(est.n_features_in_)
    ranks = [(p,), (p, p)] + ([(m,), (m, m)] if states else [])
    out = lazy(est, _ForecastRows(est, n_steps, states), Y, lens, None,
               *[(r, np.float64) for r in ranks], out_rows=lambda part: len(part) * n_steps)
    out = tuple(a.reshape((len(lens), n_steps) + r) for a, r in zip(out, ranks, strict=True))
    return tuple(a[0] for a in out) if lengths is None else out
