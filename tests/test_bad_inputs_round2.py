"""Bad and extreme inputs on the models and options of round 2 (state space, Student-t,
noise component, HMM extensions, Dask, command line): each a clear error or a defined
result. One test per finding of the fuzzing; each failed before its fix."""

import warnings

import numpy as np
import pytest
from emframe.models import GaussianMixture, LinearGaussianSSM, StudentTMixture

from emframe.core.validation import check_array, check_scalar
from emframe.exceptions import ConvergenceWarning
from emframe.inference.gaussian import GaussianKernel, get_covariance_strategy
from emframe.inference.gaussian.far import far_log_mahalanobis
from emframe.inference.kmeans import kmeans_labels, kmeans_plusplus
from emframe.inference.student_t import (
    expected_weights,
    far_log_expected_weights,
    far_t_log_density,
    t_log_density,
)

rng = np.random.default_rng(0)
X = np.vstack([rng.standard_t(3, (60, 2)), rng.standard_t(3, (60, 2)) + 6])
Y = np.cumsum(rng.normal(size=(40, 2)), axis=0) + rng.normal(size=(40, 2))
FIELDS = ["transition_matrix", "transition_offset", "transition_covariance",
          "observation_matrix", "observation_offset", "observation_covariance",
          "initial_state_mean", "initial_state_covariance"]


# -- k-means initialisation at extreme scales ------------------------------------------------
@pytest.mark.parametrize("scale", [1e300, 1e-300])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_at_extreme_scales_gives_the_labels_of_unit_scale(scale, seed):
    # scipy's kmeans2 segfaulted (1e300: squared distances overflow) or put every row
    # in one cluster (1e-300: they underflow); a power-of-two rescaling is exact
    want = kmeans_labels(X, 3, np.random.default_rng(seed))
    assert np.array_equal(kmeans_labels(X * scale, 3, np.random.default_rng(seed)), want)
    want = kmeans_plusplus(X, 3, np.random.default_rng(seed))
    assert np.array_equal(kmeans_plusplus(X * scale, 3, np.random.default_rng(seed)), want)


def test_student_t_fit_at_1e300_is_an_error_not_a_crash():
    with pytest.raises(ValueError):
        StudentTMixture(3, random_state=1, max_iter=5).fit(X * 1e300)


# -- Student-t far from the data --------------------------------------------------------------
FAR = np.array([[1e200, 1e200], [1e300, 0.0], [-1e305, 3.0], [1e100, 1e100]])


@pytest.mark.parametrize("kw", [{}, {"noise": True}, {"covariance_type": "diag"},
                                {"covariance_type": "tied"}, {"covariance_type": "spherical"}])
def test_student_t_far_points_get_finite_posteriors_and_outlier_scores(kw):
    t = StudentTMixture(2, random_state=0, **kw).fit(X)
    proba = t.predict_proba(FAR)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    scores = t.outlier_scores(FAR)
    assert np.all(np.isfinite(scores))
    # further out is more outlying; a power law: the score grows like log(distance)
    assert scores[1] > scores[0] > scores[3] > t.outlier_scores(X).max()
    assert np.all(np.isfinite(t.score_samples(FAR)))
    if not kw.get("noise"):
        assert np.array_equal(t.predict(FAR), np.argmax(proba, axis=1))


def test_student_t_outlier_scores_unchanged_near_the_data():
    t = StudentTMixture(2, random_state=0).fit(X)
    model = t._t_model()
    want = -np.log(model.expected_weight(t._t_params(), X))
    assert np.allclose(t.outlier_scores(X), want, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_far_formulas_agree_with_the_direct_ones_where_both_are_finite(covariance_type):
    t = StudentTMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    strategy = get_covariance_strategy(covariance_type)
    pts = np.array([[1e3, -2e3], [1e60, 3e60], [-5e100, 1.0]])
    kernel = GaussianKernel(strategy, t.means_, t.precisions_cholesky_)
    maha = t._t_model()._maha(kernel, pts)
    log_maha = far_log_mahalanobis(strategy, t.means_, t.precisions_cholesky_, pts)
    assert np.allclose(log_maha, np.log(maha), rtol=1e-9)
    log_det = np.zeros(2)
    assert np.allclose(far_t_log_density(log_maha, log_det, t.dof_, 2),
                       t_log_density(maha, log_det, t.dof_, 2), rtol=1e-9)
    assert np.allclose(far_log_expected_weights(log_maha, t.dof_, 2),
                       np.log(expected_weights(maha, t.dof_, 2)), rtol=1e-9)


# -- shared validation helpers ----------------------------------------------------------------
@pytest.mark.parametrize("field", FIELDS)
def test_ssm_scalar_init_is_a_shape_error(field):
    with pytest.raises(ValueError, match=rf"{field}_init must have shape .* got shape \(\)"):
        LinearGaussianSSM(2, **{f"{field}_init": 1.0}).fit(Y)


def test_check_array_scalar_needing_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="w must be an array, got the scalar 3.0"):
        check_array(3.0, "w", ensure_2d=False)
    assert check_array(3.0, "w", ensure_2d=False, min_samples=0).shape == ()


@pytest.mark.parametrize("make", [
    lambda: GaussianMixture(2, noise=True, noise_init=float("nan")),
    lambda: StudentTMixture(2, noise=True, noise_init=float("nan")),
])
def test_nan_hyperparameter_with_bounds_is_refused(make):
    with pytest.raises(ValueError, match=r"noise_init must be a number > 0 and < 1, got nan"):
        make().fit(X)


def test_check_scalar_nan_names_the_bounds():
    with pytest.raises(ValueError, match=r"a must be a number >= 1, got nan"):
        check_scalar(float("nan"), "a", float, min_value=1)
    assert np.isnan(check_scalar(float("nan"), "a", float))  # no bounds: nothing to break


# -- data so large that sums of squares overflow ------------------------------------------------
def _ar(**kw):
    from emframe.models import AutoRegressiveHMM
    return AutoRegressiveHMM(2, **kw)


def _hmm(name):
    def make(**kw):
        from emframe import models
        return getattr(models, name)(2, **kw)
    return make


@pytest.mark.parametrize("make", [
    lambda **kw: StudentTMixture(3, random_state=1, **kw),
    lambda **kw: GaussianMixture(2, noise=True, **kw),
    lambda **kw: LinearGaussianSSM(1, **kw),
    _hmm("GaussianHMM"), _hmm("MissingDataGaussianMixture"), _ar,
    lambda **kw: _hmm("GMMHMM")(n_mix=2, **kw),
])
def test_data_whose_squares_overflow_is_refused_with_the_fix(make):
    # formerly a segfault (Student-t), "Probabilities contain NaN" (Gaussian HMM),
    # "SVD did not converge" (autoregressive) or scipy's "array must not contain infs"
    est = make(max_iter=3)
    with pytest.raises(ValueError, match=r"entries as large as 1\.26e\+301 .* rescale"):
        est.fit(X * 1e300)
    assert not hasattr(est, "params_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        make(max_iter=3).fit(X * 1e150)  # large but summable: fitted


# -- sizes and missing data --------------------------------------------------------------------
@pytest.mark.parametrize("m", [10**9, 10**5])
def test_ssm_state_dimension_beyond_memory_is_refused_at_once(m):
    # 10**9 allocated (p, m) random loadings for minutes before failing
    with pytest.raises(ValueError, match=rf"n_dim_state={m} is too large: .* GiB per array"):
        LinearGaussianSSM(m).fit(Y)


def test_categorical_hmm_with_every_symbol_missing_and_n_features_given():
    from emframe.models import CategoricalHMM
    # formerly "each row of emissionprob_ must sum to 1, but row 0 sums to 0.5"
    for missing in (np.full((10, 1), -1), np.full((10, 1), np.nan)):
        est = CategoricalHMM(2, n_features=3)
        with pytest.raises(ValueError, match="every symbol of X is missing"):
            est.fit(missing)
        assert not hasattr(est, "emissionprob_")


def test_ssm_numerically_singular_covariance_is_not_called_a_positive_eigenvalue():
    from emframe.models.ssm.params import check_covariance
    # formerly "must be positive definite; its smallest eigenvalue is 8.63e+68"
    # (the seed picks a start from which the first M-step reaches C ~ 1e-16, S0 ~ 1e136 and
    # R ~ 1e-6; the square-root filter's second E-step finds R lost against C S0 C')
    est = LinearGaussianSSM(2, max_iter=3, random_state=2,
                            initial_state_covariance_init=np.eye(2) * 1e200)
    with pytest.raises(ValueError, match=r"innovation covariance C P C' \+ R at row 0 is "
                                         r"singular to float64 precision"):
        est.fit(Y)
    with pytest.raises(ValueError, match="its smallest eigenvalue is -1"):
        check_covariance(-np.eye(2), "R")


# -- Dask inputs -------------------------------------------------------------------------------
def _dask_cases():
    from emframe.models import AutoRegressiveHMM, GaussianHMM
    return [lambda: GaussianHMM(2, max_iter=2), lambda: AutoRegressiveHMM(2, max_iter=2),
            lambda: LinearGaussianSSM(1, max_iter=2)]


@pytest.mark.parametrize("case", range(3))
def test_sequence_models_on_dask_arrays_of_unknown_chunks_or_strings(case):
    da = pytest.importorskip("dask.array")
    make = _dask_cases()[case]
    d = da.from_array(X, chunks=(40, 2))
    unknown = d[d[:, 0] > -100]  # boolean indexing: chunk sizes NaN
    # formerly "cannot convert float NaN to integer"
    with pytest.raises(ValueError, match=r"X has unknown chunk sizes .*X\.compute_chunk_sizes\(\)"):
        make().fit(unknown, scheduler="synchronous")
    fitted = make().fit(d, scheduler="synchronous")
    for method in ("score", "score_samples"):
        with pytest.raises(ValueError, match="unknown chunk sizes"):
            getattr(fitted, method)(unknown)
    # formerly numpy's "ufunc 'maximum' did not contain a loop" (HMMs)
    strings = da.from_array(np.full((120, 2), "a"), chunks=(40, 2))
    with pytest.raises((TypeError, ValueError), match="numeric"):
        make().fit(strings, scheduler="synchronous")


# -- command line ------------------------------------------------------------------------------
@pytest.fixture
def series_csv(tmp_path):
    path = tmp_path / "y.csv"
    path.write_text("a,b\n" + "".join(f"{r[0]},{r[1]}\n" for r in Y))
    return path


@pytest.mark.parametrize("args, message", [
    (["--init", "=1"], r"--init '=1': write FIELD=VALUES"),  # was exit 1, KeyError: ''
    (["--init", " =1"], r"--init ' =1': write FIELD=VALUES"),
    (["--state-dim", "1000000000"], r"--state-dim 1000000000: n_dim_state=1000000000 is too "
                                     "large"),  # was a fit that allocated until killed
    (["--local-cluster", "100000"], r"--local-cluster 100000: this machine has \d+ cores"),
])
def test_cli_bad_values_exit_2_naming_the_option(series_csv, capsys, args, message):
    from cli_helpers import call
    code, _, err = call(capsys, "fit", "ssm", series_csv, "-q", *args)
    assert code == 2
    assert "Traceback" not in err
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize("change", [{"n_dim_state": 2}, {"observation_covariance_type": "diag"},
                                    {"observation_offset": False}])
def test_ssm_warm_start_after_a_change_of_settings_says_so(change):
    # formerly "transition_matrix must have shape (2, 2), got (1, 1)" and the like
    est = LinearGaussianSSM(warm_start=True, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(Y)
    before = est.params_
    with pytest.raises(ValueError, match=r"warm_start=True continues the previous fit, but .*"
                                         r"set warm_start=False"):
        est.set_params(**change).fit(Y)
    assert est.params_ is before


def test_a_huge_n_init_is_refused_before_its_seeds_are_drawn():
    from emframe.core.engine import MAX_N_INIT

    with pytest.raises(ValueError, match=rf"n_init must be <= {MAX_N_INIT}, got 1{'0' * 20}$"):
        GaussianMixture(2, n_init=10**20).fit(np.random.default_rng(0).normal(size=(20, 2)))
