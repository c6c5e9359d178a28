"""Loaders for the real data sets shipped in ``emframe/interfaces/data`` (sources in its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_DATA = Path(__file__).resolve().parent / "data"


def path(name: str) -> Path:
    """Path of a shipped data file, for example ``path("old_faithful.csv")``."""
    p = _DATA / name
    if not p.is_file():
        available = sorted(f.name for f in _DATA.iterdir() if f.suffix in {".csv", ".png"})
        raise ValueError(f"no shipped data file {name!r}; available: {available}")
    return p


def _read_csv(name: str) -> tuple[list[str], np.ndarray]:
    p = path(name)
    with open(p, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    # empty cells are the data's real missing values
    data = np.genfromtxt(p, delimiter=",", skip_header=1, dtype=float, filling_values=np.nan)
    return header, np.atleast_2d(data)


def load_old_faithful() -> np.ndarray:
    """Old Faithful eruptions: array of shape (272, 2), eruption duration and waiting time (min)."""
    return _read_csv("old_faithful.csv")[1]


def load_airquality() -> tuple[np.ndarray, list[str]]:
    """New York air quality, 1973: array of shape (153, 6) with NaN for missing, and column names.

    Columns: Ozone, Solar.R, Wind, Temp, Month, Day. Ozone has 37 and Solar.R 7 missing values.
    """
    header, data = _read_csv("airquality.csv")
    return data, header


def load_earthquakes() -> tuple[np.ndarray, np.ndarray]:
    """Annual counts of major earthquakes, 1900-2006.

    Returns
    -------
    years : ndarray of shape (107,)
    counts : ndarray of shape (107,), int
    """
    data = _read_csv("earthquakes.csv")[1]
    return data[:, 0].astype(int), data[:, 1].astype(int)


def load_nile() -> tuple[np.ndarray, np.ndarray]:
    """Annual flow of the river Nile at Aswan, 1871-1970 (10^8 m^3).

    Returns
    -------
    years : ndarray of shape (100,), int
    flow : ndarray of shape (100,), float
    """
    data = _read_csv("nile.csv")[1]
    return data[:, 0].astype(int), data[:, 1]


def load_digits_binary() -> tuple[np.ndarray, np.ndarray]:
    """Binarised 8×8 handwritten digits.

    Returns
    -------
    X : ndarray of shape (1797, 64), 0/1 floats
    labels : ndarray of shape (1797,), int digits 0-9
    """
    data = _read_csv("digits_binary.csv")[1]
    return data[:, :64], data[:, 64].astype(int)


def coffee_path() -> Path:
    """Path of the coffee photograph (PNG, 200 × 300 RGB) for image segmentation."""
    return path("coffee.png")
