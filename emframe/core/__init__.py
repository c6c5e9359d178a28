"""The engine's core: model contract, parameters and statistics, fit loop, estimator base.

Nothing here imports from :mod:`emframe.inference`, :mod:`emframe.interfaces`,
:mod:`emframe.distributed` or :mod:`emframe.models`.

==============================  ======================================================
module                          what it holds
==============================  ======================================================
``params``                      :class:`Params` and :class:`Stats`, immutable values
``model``                       :class:`EMModel`, the contract every model implements
``mixture``                     :class:`MixtureModel`, :class:`MixtureEstimator`
``engine``                      :func:`fit_em`: restarts, freezing, the choice of stepper
``loop``                        one restart's E-steps, history, guard and stopping rule
``acceleration``                SQUAREM
``online``                      stepwise (online) EM
``results``                     :class:`FitResult`, :class:`IterationInfo`
``data``                        :class:`DataSource`: where E-steps get their data
``executors``                   registry of executors for data held elsewhere (Dask)
``estimator``                   :class:`EMEstimator`, scikit-learn's surface
``fitted_attributes``           assigning a fitted attribute replaces it in ``params_``
``row_random``                  random numbers tied to row numbers (any chunking)
``serialization``               writing the pickle-free model file
``numerics``, ``reparam``       log-space helpers, Cholesky, unconstrained coordinates
``validation``, ``exceptions``  input checks and error types
==============================  ======================================================
"""
