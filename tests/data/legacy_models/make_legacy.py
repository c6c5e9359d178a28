"""Save one of each shipped estimator with emframe 0.1.0 (round 1 layout)."""
import json
import warnings

import numpy as np
from emframe.models import (
    GMMHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    MissingDataGaussian,
    MissingDataGaussianMixture,
    PoissonHMM,
)

from emframe.datasets import load_digits_binary, load_earthquakes, load_old_faithful

warnings.simplefilter("ignore")
out = "tests/data/legacy_models"
X = load_old_faithful()
rng = np.random.default_rng(0)
Xm = X.copy()
Xm[rng.random(X.shape) < 0.1] = np.nan
counts = load_earthquakes()[1]
B = load_digits_binary()[0][:300]
sym = rng.integers(0, 3, size=(200, 1))
ests = {
    "gaussian_mixture": (GaussianMixture(2, covariance_type="full", random_state=0).fit(X), X),
    "gaussian_mixture_diag": (GaussianMixture(3, covariance_type="diag", random_state=0).fit(X), X),
    "bernoulli_mixture": (BernoulliMixture(3, random_state=0).fit(B), B),
    "gaussian_hmm": (GaussianHMM(2, random_state=0).fit(X, [100, 172]), X),
    "categorical_hmm": (CategoricalHMM(2, random_state=0).fit(sym), sym),
    "poisson_hmm": (PoissonHMM(2, random_state=0).fit(counts[:, None]), counts[:, None]),
    "gmm_hmm": (GMMHMM(2, n_mix=2, random_state=0).fit(X), X),
    "missing_data_gaussian": (MissingDataGaussian().fit(Xm), Xm),
    "missing_data_gaussian_mixture": (MissingDataGaussianMixture(2, random_state=0).fit(Xm), Xm),
}
expected = {}
for name, (est, data) in ests.items():
    est.save(f"{out}/{name}.npz")
    if hasattr(est, "score_samples"):
        try:
            v = est.score_samples(data)
            if isinstance(v, tuple):
                v = v[0]
        except Exception:
            v = est.score(data)
    else:
        v = est.score(data)
    np.savez(f"{out}/{name}.expected.npz", X=data, value=np.asarray(v, dtype=float))
    expected[name] = type(est).__name__
json.dump(expected, open(f"{out}/classes.json", "w"), indent=1)
print(expected)
