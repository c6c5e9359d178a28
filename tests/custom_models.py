"""Small custom models used to test the engine itself, written as a user would."""

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, xlogy

from emframe import EMModel, MixtureEstimator, MixtureModel, Params, Stats


@dataclass(frozen=True)
class PoissonParams(Params):
    weights: np.ndarray  # (K,)
    rates: np.ndarray  # (K,)


@dataclass(frozen=True)
class PoissonStats(Stats):
    resp_sum: np.ndarray  # (K,)
    x_sum: np.ndarray  # (K,)


class PoissonMixture(MixtureModel):
    """A mixture of Poissons on one column of counts."""

    param_constraints = {"weights": "simplex", "rates": "positive"}

    def __init__(self, n_components: int) -> None:
        self.n_components = n_components

    def initialize(self, X, rng):
        rates = rng.choice(X[:, 0], self.n_components) + rng.uniform(0.5, 1.5, self.n_components)
        return PoissonParams(np.full(self.n_components, 1 / self.n_components), rates)

    def log_weighted_prob(self, params, X):
        x = X[:, :1]
        # xlogy: a rate of exactly 0 is fine for a count of 0
        return np.log(params.weights) + xlogy(x, params.rates) - params.rates - gammaln(x + 1)

    def stats_from_resp(self, X, resp):
        return PoissonStats(resp.sum(axis=0), resp.T @ X[:, 0])

    def m_step(self, stats):
        return PoissonParams(stats.resp_sum / stats.resp_sum.sum(), stats.x_sum / stats.resp_sum)

    def n_parameters(self, params):
        return 2 * self.n_components - 1

    def sample_components(self, params, labels, rng):
        return rng.poisson(params.rates[labels]).astype(float)[:, None]


def poisson_data(n1=300, n2=200, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.poisson(2.0, n1), rng.poisson(10.0, n2)])
    return x[:, None].astype(float)


class PoissonMixtureEstimator(MixtureEstimator):
    """Estimator surface over :class:`PoissonMixture`, for testing the estimator base."""

    def __init__(
        self,
        n_components=2,
        *,
        tol=1e-3,
        max_iter=100,
        n_init=1,
        random_state=None,
        verbose=0,
        warm_start=False,
        freeze=(),
        strict=False,
    ):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.freeze = freeze
        self.strict = strict

    def _build_model(self, X):
        return PoissonMixture(self.n_components)

    def _fitted_attributes(self, params):
        return {"weights_": params.weights, "rates_": params.rates}


@dataclass(frozen=True)
class FAParams(Params):
    mean: np.ndarray  # (d,)
    loadings: np.ndarray  # (d, q)
    noise: np.ndarray  # (d,) noise variances


@dataclass(frozen=True)
class FAStats(Stats):
    n: float
    x_z: np.ndarray  # (d, q + 1): sum of x E[z~]', with z~ = (z, 1)
    z_z: np.ndarray  # (q + 1, q + 1): sum of E[z~ z~']
    x_x: np.ndarray  # (d,): sum of x * x


class FactorAnalysis(EMModel):
    """Factor analysis x = mean + loadings @ z + noise, z ~ N(0, I_q), fitted by EM."""

    param_constraints = {"mean": "real", "loadings": "real", "noise": "positive"}

    def __init__(self, n_factors=1):
        self.q = n_factors

    def initialize(self, X, rng):
        return FAParams(X.mean(axis=0), rng.normal(size=(X.shape[1], self.q)), X.var(axis=0))

    def e_step(self, params, X):
        cov = params.loadings @ params.loadings.T + np.diag(params.noise)
        beta = np.linalg.solve(cov, params.loadings).T  # (q, d): E[z | x] = beta (x - mean)
        n = len(X)
        ez = np.column_stack([(X - params.mean) @ beta.T, np.ones(n)])
        zz = ez.T @ ez
        zz[: self.q, : self.q] += n * (np.eye(self.q) - beta @ params.loadings)
        stats = FAStats(float(n), X.T @ ez, zz, np.einsum("ij,ij->j", X, X))
        return stats, self.log_likelihood(params, X)

    def m_step(self, stats):
        wt = np.linalg.solve(stats.z_z, stats.x_z.T).T  # (d, q + 1): loadings and mean
        noise = (stats.x_x - np.einsum("ij,ij->i", wt, stats.x_z)) / stats.n
        return FAParams(wt[:, -1], wt[:, :-1], noise)

    def log_likelihood(self, params, X):
        cov = params.loadings @ params.loadings.T + np.diag(params.noise)
        chol = np.linalg.cholesky(cov)
        y = np.linalg.solve(chol, (X - params.mean).T)
        d = X.shape[1]
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        return float(-0.5 * (y * y).sum() - 0.5 * len(X) * (log_det + d * np.log(2 * np.pi)))


def factor_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    loadings = np.array([[1.0], [0.8], [1.2], [0.9], [0.7]])
    noise = np.sqrt([0.5, 0.3, 0.6, 0.4, 0.5])
    return rng.normal(size=(n, 1)) @ loadings.T + rng.normal(size=(n, 5)) * noise + 3.0
