"""Inference numerics shared by the models: pure functions of arrays, no estimators.

- :mod:`emframe.inference.gaussian`: covariance strategies, additive Gaussian
  moments, the fast log-density kernel and conditional Gaussians for missing data.
- :mod:`emframe.inference.hmm`: forward-backward, Viterbi and their numba kernels.
"""
