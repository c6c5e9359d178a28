"""Exact inference numerics, independent of any estimator or model class."""
