"""SQUAREM acceleration of the EM map, monotone by construction."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from emframe.core.loop import _Loop, _plain_steps
from emframe.core.params import Params

#: SQUAREM's step-length bound starts at plain EM and is multiplied (divided)
#: by this factor after a step that reached (failed at) the bound, as in
#: Varadhan & Roland's reference implementation.
SQUAREM_STEP_FACTOR = 4.0


def _squarem_steps(loop: _Loop, params: Params, fixed: dict[str, Any]) -> Params:
    """SQUAREM (Varadhan & Roland 2008, scheme S3) with a monotone fallback.

    Each cycle takes two EM steps from θ0 and extrapolates along the squared
    iteration ``θ0 - 2αr + α²v`` in the model's unconstrained coordinates, with
    ``|α|`` capped by an adaptive bound. The extrapolated point is kept only if
    its objective is at least that of θ1; otherwise the cycle falls back to θ2,
    plain EM, and the bound shrinks. So every recorded objective is at least the
    previous one, and the guard still watches each step.
    """
    model = loop.model
    fields = tuple(f for f in model._constraints() if f not in fixed)
    step_max = 1.0
    while loop.n_iter < loop.max_iter:
        s0, obj0 = loop.evaluate(params)
        p1 = loop.m_step(s0, fixed)
        if loop.record(obj0, p1):
            return p1
        s1, obj1 = loop.evaluate(p1)
        p2 = loop.m_step(s1, fixed)
        if loop.record(obj1, p2):
            return p2
        with np.errstate(invalid="ignore", divide="ignore"):
            v0 = model.params_to_vector(params, fields)
            r = model.params_to_vector(p1, fields) - v0
            v = model.params_to_vector(p2, fields) - v0 - 2 * r
        step = 1.0
        # a parameter on the boundary (a rate at 0) has no unconstrained coordinate
        if np.all(np.isfinite(v0)) and np.all(np.isfinite(r)) and np.all(np.isfinite(v)):
            nr, nv = float(np.linalg.norm(r)), float(np.linalg.norm(v))
            if nv > 0 and math.isfinite(nr / nv):
                step = min(max(nr / nv, 1.0), step_max)
        at_bound = step == step_max
        accepted = None
        if step > 1.0:  # step 1 is θ2 itself, plain EM
            try:
                trial = model.params_from_vector(v0 + 2 * step * r + step**2 * v, params, fields)
                trial = trial.replace(**fixed) if fixed else trial
                model.check_params(trial)
                s_t, obj_t = loop.evaluate(trial)
                if obj_t >= obj1:
                    accepted = (s_t, obj_t)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                pass  # an invalid or non-finite extrapolation: plain EM instead
            if accepted is None:
                if at_bound:
                    step_max = max(1.0, step_max / SQUAREM_STEP_FACTOR)
                params = p2
                continue
        if at_bound:
            step_max *= SQUAREM_STEP_FACTOR
        if accepted is None:
            params = p2
            continue
        s_t, obj_t = accepted
        params = loop.m_step(s_t, fixed)
        if loop.record(obj_t, params):
            return params
    return params


ACCELERATORS: dict[str | None, Callable[[_Loop, Params, dict[str, Any]], Params]] = {
    None: _plain_steps,
    "squarem": _squarem_steps,
}

