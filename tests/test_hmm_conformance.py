"""emframe.testing conformance of every HMM: monotone, additive over sequences, valid."""

import numpy as np
import pytest
from emframe.models.hmm import HMMModel, Sequences
from hmm_kinds import COVARIANCE_TYPES, emission
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emframe.testing import (
    check_additive,
    check_model,
    check_monotone,
    check_valid_params,
)


def _gaussian_data(rng, n, d=2):
    centres = np.array([[0.0] * d, [3.0] * d, [-3.0] + [1.0] * (d - 1)])
    z = rng.integers(0, 3, n)
    return centres[z] + rng.normal(size=(n, d))


def _data(kind, rng, lengths):
    n = int(np.sum(lengths))
    if kind == "categorical":
        return rng.integers(0, 4, size=(n, 1)).astype(float)
    if kind.startswith("poisson"):
        return rng.poisson([2.0, 7.0], size=(n, 2)).astype(float)
    if kind == "multinomial":
        p = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])[rng.integers(0, 2, n)]
        return rng.multinomial(rng.integers(0, 8, n), p).astype(float)
    return _gaussian_data(rng, n)


DISCRETE = ("categorical", "poisson", "poisson-prior", "multinomial")
KINDS = [*DISCRETE, *COVARIANCE_TYPES, *(f"gmm-{c}" for c in COVARIANCE_TYPES)]


@pytest.mark.parametrize("kind", KINDS)
def test_check_model(kind):
    rng = np.random.default_rng(0)
    lengths = [40, 25, 35, 20]
    seqs = Sequences(_data(kind, rng, lengths), lengths)
    chunks = [Sequences(seqs.X[:65], [40, 25]), Sequences(seqs.X[65:], [35, 20])]
    check_model(lambda: HMMModel(emission(kind), 3), seqs, chunks=chunks, n_iter=15)


@pytest.mark.parametrize("kind", KINDS)
def test_map_priors_monotone_and_additive(kind):
    # With Dirichlet priors the engine monitors the penalised log-likelihood.
    rng = np.random.default_rng(1)
    lengths = [30, 50, 20]
    seqs = Sequences(_data(kind, rng, lengths), lengths)
    model = HMMModel(emission(kind), 3, startprob_prior=2.0, transmat_prior=3.0)
    params = model.initialize(seqs, np.random.default_rng(0))
    h = check_monotone(model, seqs, params, n_iter=15)
    assert h[-1] > h[0]
    check_additive(model, params, seqs, seqs.split(40))


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    k=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    prior=st.sampled_from([1.0, 1.5, 4.0]),
)
# a single count of 0 gave a start rate of 0, where the Gamma prior's density is 0
@example(kind="poisson-prior", lengths=[1], k=1, seed=3, prior=1.0)
def test_monotone_additive_valid_hypothesis(kind, lengths, k, seed, prior):
    rng = np.random.default_rng(seed)
    X = _data(kind, rng, lengths)
    if kind not in DISCRETE and X.shape[0] < 6:
        X = X + rng.normal(size=X.shape)  # no exact duplicates in tiny samples
    seqs = Sequences(X, lengths)
    model = HMMModel(emission(kind), k, transmat_prior=prior)
    params = model.initialize(seqs, np.random.default_rng(seed))
    check_monotone(model, seqs, params, n_iter=8)
    check_valid_params(model, params, seqs)
    if len(lengths) > 1:
        cut = len(lengths) // 2
        n0 = int(np.sum(lengths[:cut]))
        chunks = [Sequences(X[:n0], lengths[:cut]), Sequences(X[n0:], lengths[cut:])]
        check_additive(model, params, seqs, chunks)
