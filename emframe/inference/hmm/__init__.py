"""Exact inference for hidden Markov models, independent of any emission model.

Every routine takes the model as arrays of log-probabilities (start, transition,
and the T×K emission log-likelihoods) and hmmlearn-style ``lengths``; see
:mod:`emframe.inference.hmm.recursions` for the algorithms.
"""

from emframe.inference.hmm.common import has_numba, uses_numba, validate_lengths
from emframe.inference.hmm.fused import FusedGaussianStats, diag_gaussian_e_step
from emframe.inference.hmm.recursions import Posterior, backward, forward, forward_backward
from emframe.inference.hmm.sampling import sample_paths
from emframe.inference.hmm.viterbi import viterbi

__all__ = [
    "FusedGaussianStats",
    "Posterior",
    "backward",
    "diag_gaussian_e_step",
    "forward",
    "forward_backward",
    "has_numba",
    "sample_paths",
    "uses_numba",
    "validate_lengths",
    "viterbi",
]
