"""Warnings name the estimator the user fitted, and point at the user's own line."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import (
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    LinearGaussianSSM,
)
from emframe.models.mixtures.gaussian import GaussianMixtureModel

from emframe import fit_em
from emframe.core.exceptions import user_stacklevel
from emframe.exceptions import ConvergenceWarning


def _data(seed: int = 0, n: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, (n // 2, 2)), rng.normal(4, 1, (n // 2, 2))])


def _record(func):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        func()
    return rec


@pytest.mark.parametrize(
    ("estimator", "fit"),
    [
        (GaussianMixture(2, max_iter=1, tol=0.0 + 1e-12, random_state=0),
         lambda est, X: est.fit(X)),
        (GaussianHMM(2, max_iter=1, tol=1e-12, random_state=0), lambda est, X: est.fit(X)),
        (LinearGaussianSSM(1, max_iter=1, tol=1e-12, random_state=0),
         lambda est, X: est.fit(X[:, :1])),
    ],
    ids=["GaussianMixture", "GaussianHMM", "LinearGaussianSSM"],
)
def test_convergence_warning_names_the_estimator_and_the_users_line(estimator, fit):
    X = _data()
    rec = _record(lambda: fit(estimator, X))
    conv = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    name = type(estimator).__name__
    assert str(conv[0].message).startswith(f"{name}: EM did not converge in max_iter=1")
    assert "Model" not in str(conv[0].message)
    assert conv[0].filename == __file__


def test_fit_em_names_the_model_for_direct_users():
    rec = _record(lambda: fit_em(GaussianMixtureModel(2), _data(), max_iter=1, tol=1e-12,
                                 random_state=0))
    (w,) = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert str(w.message).startswith("GaussianMixtureModel: EM did not converge")
    assert w.filename == __file__
    rec = _record(lambda: fit_em(GaussianMixtureModel(2), _data(), max_iter=1, tol=1e-12,
                                 random_state=0, name="my mixture"))
    (w,) = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert str(w.message).startswith("my mixture: EM did not converge")


def test_errors_during_the_fit_name_the_estimator():
    # a non-finite log-likelihood at the start: a zero-probability symbol
    hm = CategoricalHMM(2, init_params="", random_state=0)
    hm.startprob_ = [1.0, 0.0]
    hm.transmat_ = [[1.0, 0.0], [0.0, 1.0]]
    hm.emissionprob_ = [[1.0, 0.0], [0.5, 0.5]]
    with pytest.raises(ValueError, match="of CategoricalHMM;"):
        hm.fit(np.array([[0], [1], [0]]))


def test_warning_from_an_overridden_fit_points_at_the_caller():
    # CategoricalHMM overrides fit; the warning about a value set but re-initialised
    # came from an internal frame before
    hm = CategoricalHMM(2, random_state=0, max_iter=2)
    hm.emissionprob_ = [[0.5, 0.5], [0.2, 0.8]]
    X = np.array([[0], [1], [1], [0], [1], [0], [0], [1]] * 5)
    rec = _record(lambda: hm.fit(X))
    user = [w for w in rec if "init_params" in str(w.message)]
    assert len(user) == 1 and user[0].filename == __file__


def test_user_stacklevel_counts_to_the_first_frame_outside_emframe():
    # called from here (outside emframe), level 1 is this very frame
    assert user_stacklevel() == 1


# -- StudentTMixture: degrees of freedom at their lower bound -------------------------------


def test_student_t_warns_when_dof_reach_the_floor_on_binary_data():
    from emframe.models import StudentTMixture

    from emframe.datasets import load_digits_binary

    X, _ = load_digits_binary()
    est = StudentTMixture(2, covariance_type="diag", max_iter=20, random_state=0)
    rec = _record(lambda: est.fit(X[:300]))
    assert np.all(est.dof_ == 0.01)
    (w,) = [w for w in rec if "degrees of freedom" in str(w.message)]
    msg = str(w.message)
    assert msg.startswith("StudentTMixture: the degrees of freedom of components [0, 1] reached")
    assert "DOF_MIN=0.01" in msg and "not continuous" in msg
    assert w.filename == __file__


def test_student_t_no_dof_warning_on_continuous_data_or_frozen_dof():
    from emframe.models import StudentTMixture

    from emframe.datasets import load_old_faithful

    rec = _record(lambda: StudentTMixture(2, random_state=0).fit(load_old_faithful()))
    assert not [w for w in rec if "degrees of freedom" in str(w.message)]
    rec = _record(lambda: StudentTMixture(2, dof_init=0.01, freeze=("dof",), random_state=0,
                                          max_iter=5).fit(_data()))
    assert not [w for w in rec if "degrees of freedom" in str(w.message)]
