"""Bad input to the HMM estimators gets a clear error naming what is wrong."""

import numpy as np
import pytest
from emframe.models import GMMHMM, CategoricalHMM, GaussianHMM, PoissonHMM

X2 = np.random.default_rng(0).normal(size=(20, 2))
COUNTS = np.random.default_rng(0).poisson(3.0, size=(20, 1))
SYMBOLS = np.random.default_rng(0).integers(0, 3, size=(20, 1))

# The short fits here only need fitted parameters, not convergence.
pytestmark = pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning")


@pytest.mark.parametrize(
    "lengths, match",
    [
        ([10, 5], r"sum\(lengths\) = 15 does not match the number of samples n_samples = 20"),
        ([10, 10, 0], "every length must be positive, got 0"),
        ([25, -5], "every length must be positive, got -5"),
        ([10.5, 9.5], "lengths must be integers"),
        ([[10, 10]], "lengths must be 1-D"),
    ],
)
def test_bad_lengths(lengths, match):
    with pytest.raises(ValueError, match=match):
        GaussianHMM(2).fit(X2, lengths)
    model = GaussianHMM(2, random_state=0, max_iter=2).fit(X2)
    with pytest.raises(ValueError, match=match):
        model.predict(X2, lengths)


@pytest.mark.parametrize(
    "make, X",
    [
        (lambda: GaussianHMM(2), X2),
        (lambda: GMMHMM(2, 2), X2),
        (lambda: PoissonHMM(2), COUNTS.astype(float)),
        (lambda: CategoricalHMM(2), SYMBOLS.astype(float)),
    ],
)
def test_inf_in_X(make, X):
    # NaN marks a missing value for these four (tests/test_hmm_missing.py); inf never
    bad = X.astype(float).copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"X contains inf \(first at row 3, column 0"):
        make().fit(bad)
    fitted = make().set_params(random_state=0, max_iter=2).fit(X)
    with pytest.raises(ValueError, match="X contains inf"):
        fitted.score(bad)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0], [1], [1.5]]), r"integer symbols, but X\[2\] = 1.5 is not an integer"),
        (np.array([[0], [-2], [1]]), r"X\[1\] = -2 is negative"),
        (np.array([[0, 1], [1, 0]]), r"one column of integer symbols, shape \(n_samples, 1\)"),
    ],
)
def test_bad_symbols(X, match):
    with pytest.raises(ValueError, match=match):
        CategoricalHMM(2).fit(X)


def test_symbols_out_of_range():
    with pytest.raises(ValueError, match=r"symbol 3 at X\[1\] is out of range: the model has "
                                         r"n_features=3 symbols \(0 to 2\)"):
        CategoricalHMM(2, n_features=3).fit([[0], [3], [1]])
    model = CategoricalHMM(2, random_state=0, max_iter=2).fit(SYMBOLS)
    with pytest.raises(ValueError, match="out of range"):
        model.predict([[0], [1], [7]])
    given = CategoricalHMM(2, init_params="st")
    given.emissionprob_ = [[0.5, 0.5], [0.2, 0.8]]  # two symbols
    with pytest.raises(ValueError, match="symbol 2 at X"):
        given.fit(SYMBOLS)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1], [-2], [3]]), r"counts must be non-negative, but X\[1, 0\] = -2"),
        (np.array([[1], [2.5], [3]]), r"counts must be integers, but X\[1, 0\] = 2.5"),
    ],
)
def test_bad_counts(X, match):
    with pytest.raises(ValueError, match=match):
        PoissonHMM(2).fit(X)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("startprob_", [0.5, 0.6], r"each row of startprob_ must sum to 1, but row 0 sums to 1.1"),
        ("startprob_", [1.5, -0.5], "startprob_ must be finite and non-negative"),
        ("startprob_", [0.2, 0.3, 0.5], r"startprob_ must have shape \(2,\), got \(3,\)"),
        ("transmat_", [[0.5, 0.5], [0.4, 0.4]],
         "each row of transmat_ must sum to 1, but row 1 sums to 0.8"),
        ("transmat_", [[1.0, 0.0], [np.nan, 1.0]], "transmat_ must be finite and non-negative"),
        ("transmat_", [1.0, 0.0], r"transmat_ must have shape \(2, 2\)"),
    ],
)
def test_non_stochastic_initial_probabilities(name, value, match):
    model = GaussianHMM(2, init_params="mc" + ("t" if name == "startprob_" else "s"))
    setattr(model, name, value)
    with pytest.raises(ValueError, match=match):
        model.fit(X2)


def test_bad_emission_attributes():
    m = CategoricalHMM(2, init_params="st")
    m.emissionprob_ = [[0.5, 0.4, 0.1], [0.5, 0.6, 0.1]]
    with pytest.raises(ValueError, match="each row of emissionprob_ must sum to 1"):
        m.fit(SYMBOLS)
    m = GaussianHMM(2, "full", init_params="stm")
    m.covars_ = np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match=r"covars_\[1\] \(component 1\) is not positive definite"):
        m.fit(X2)
    m = GaussianHMM(2, "diag", init_params="stc")
    m.means_ = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"means_ must have shape \(2, 2\), got \(2, 3\)"):
        m.fit(X2)
    m = PoissonHMM(2, init_params="st")
    m.lambdas_ = [[1.0], [-1.0]]
    with pytest.raises(ValueError, match="lambdas_ must be non-negative"):
        m.fit(COUNTS)
    m = GMMHMM(2, 2, init_params="stmc")
    m.weights_ = [[0.5, 0.5], [1.0, 1.0]]
    with pytest.raises(ValueError, match="each row of weights_ must sum to 1"):
        m.fit(X2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"transmat_prior": 0.5}, ValueError, "transmat_prior must be >= 1 everywhere"),
        ({"startprob_prior": [2.0, 2.0, 2.0]}, ValueError, "startprob_prior must be a number or"),
        ({"covariance_type": "banana"}, ValueError, "covariance_type must be one of"),
        ({"algorithm": "best"}, ValueError, "algorithm must be one of"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
        ({"n_components": 0}, ValueError, "n_components must be >= 1"),
        ({"reg_covar": -1.0}, ValueError, "reg_covar must be >= 0"),
        ({"n_components": 2.5}, TypeError, "n_components must be int"),
    ],
)
def test_bad_hyperparameters(kwargs, error, match):
    params = {"n_components": 2, **kwargs}
    with pytest.raises(error, match=match):
        GaussianHMM(**params).fit(X2)


def test_wrong_number_of_features_and_decoder():
    model = GaussianHMM(2, random_state=0, max_iter=2).fit(X2)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianHMM is expecting 2"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        model.decode(X2, algorithm="posterior")
    with pytest.raises(ValueError, match="Expected a 2-D array for X"):
        model.score(np.zeros(4))
