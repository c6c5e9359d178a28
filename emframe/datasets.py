"""The real data sets shipped with emframe (public path; see :mod:`emframe.interfaces.datasets`)."""

from emframe.interfaces.datasets import (
    coffee_path,
    load_airquality,
    load_digits_binary,
    load_earthquakes,
    load_nile,
    load_old_faithful,
    path,
)

__all__ = [
    "coffee_path",
    "load_airquality",
    "load_digits_binary",
    "load_earthquakes",
    "load_nile",
    "load_old_faithful",
    "path",
]
