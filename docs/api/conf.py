"""Sphinx configuration of emframe's API reference (build: see README.md)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402  (writes the module pages before Sphinx reads them)

project = "emframe"
author = "the emframe developers"
extensions = ["sphinx.ext.autodoc", "numpydoc"]
generate.write_pages(HERE / "reference")
release = generate.version()

root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections already give the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
