"""Inference numerics shared by the models: pure functions of arrays, no estimators.

- :mod:`emframe.inference.gaussian`: covariance strategies, additive Gaussian
  moments, the fast log-density kernel and conditional Gaussians for missing data.
- :mod:`emframe.inference.hmm`: forward-backward, Viterbi and their numba kernels.
- :mod:`emframe.inference.student_t`: multivariate t log-densities stable up to the
  Gaussian limit, the latent precision weights and the degrees-of-freedom update.
- :mod:`emframe.inference.kalman`: the Kalman filter, the RTS smoother and the
  expected statistics of linear-Gaussian state-space models, with missing entries.
- :mod:`emframe.inference.compiled`: calling the compiled (numba) kernels so that a
  Ctrl-C during one is a KeyboardInterrupt.
"""
