"""What users touch besides the estimators: the command line, model files, plots and data sets.

The only layer of ``emframe`` that may import :mod:`emframe.models`.
"""
