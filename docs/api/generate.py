"""Write one reference page per emframe module, listing every public class and function.

"Public" is the module's ``__all__`` when it has one, else every name not starting
with ``_`` that the module defines itself. Names a module only re-exports (the
facades ``emframe``, ``emframe.models``, ...) are listed with a link to the page
of the module that defines them, so each object is documented exactly once.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

#: Sections of the index, in order: (title, module-name prefixes).
LAYERS = [
    ("Public API", ["emframe", "emframe.testing", "emframe.datasets", "emframe.plotting",
                    "emframe.exceptions"]),
    ("Models", ["emframe.models"]),
    ("Engine core", ["emframe.core"]),
    ("Inference numerics", ["emframe.inference"]),
    ("Executors", ["emframe.distributed"]),
    ("Interfaces", ["emframe.interfaces"]),
]


def version() -> str:
    from emframe._version import __version__

    return __version__


def modules() -> list[str]:
    """Every importable module of the emframe package, sorted."""
    import emframe.models

    import emframe

    names = {"emframe", "emframe.models"}
    for pkg in (emframe, emframe.models):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
            if info.name.rpartition(".")[2].startswith("_") or info.name.endswith("__main__"):
                continue
            names.add(info.name)
    return sorted(names)


def public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if not n.startswith("__")]
    return [
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    ]


def _is_estimator(cls) -> bool:
    """A user-facing estimator: a subclass of EMEstimator (not the base itself)."""
    from emframe.core.estimator import EMEstimator

    return issubclass(cls, EMEstimator) and cls is not EMEstimator


def _home(obj) -> str | None:
    home = getattr(obj, "__module__", None)
    return home if isinstance(home, str) and home.startswith("emframe") else None


def _private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def page(name: str) -> str:
    """The reStructuredText of one module's page."""
    module = importlib.import_module(name)
    lines = [name, "=" * len(name), "", f".. automodule:: {name}", "   :no-members:", ""]
    defined, reexported, foreign = [], [], []
    for attr in public_names(module):
        obj = getattr(module, attr)
        routine = inspect.isclass(obj) or inspect.isroutine(obj)
        home = _home(obj) if routine else None
        if routine and home is None:
            foreign.append((attr, obj))
        elif home is not None and home != name and not _private(home):
            reexported.append((attr, f"{home}.{obj.__qualname__}", obj))
        else:
            defined.append((attr, obj))
    if reexported:
        lines += ["Also available here (documented where they are defined):", ""]
        for attr, target, obj in reexported:
            role = "class" if inspect.isclass(obj) else "func"
            lines.append(f"- :py:{role}:`{attr} <{target}>`")
        lines.append("")
    for attr, obj in foreign:
        lines += [f"- ``{attr}``: re-exported from ``{obj.__module__}``", ""]
    for attr, obj in defined:
        if inspect.isclass(obj):
            lines += [f".. autoclass:: {name}.{attr}", "   :members:", "   :show-inheritance:"]
            if _is_estimator(obj):  # fit, predict, score, ... on the estimator's own page
                lines.append("   :inherited-members:")
            lines.append("")
        elif callable(obj):
            lines += [f".. autofunction:: {name}.{attr}", ""]
        else:
            lines += [f".. autodata:: {name}.{attr}", "   :no-value:", ""]
    return "\n".join(lines)


def _section(name: str) -> str:
    best = ""
    for title, prefixes in LAYERS:
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > len(best):
                best, chosen = p, title
    return chosen if best else "Other"


def write_pages(out: Path) -> list[str]:
    """Write ``<out>/<module>.rst`` for every module and ``<out>/index.rst``; return the modules."""
    out.mkdir(exist_ok=True)
    names = modules()
    for old in out.glob("*.rst"):
        old.unlink()
    by_section: dict[str, list[str]] = {}
    for name in names:
        (out / f"{name}.rst").write_text(page(name), encoding="utf-8")
        by_section.setdefault(_section(name), []).append(name)
    index = ["API reference", "=============", ""]
    for title, _ in LAYERS:
        if title in by_section:
            index += [title, "-" * len(title), "", ".. toctree::", "   :maxdepth: 1", ""]
            index += [f"   {n}" for n in by_section[title]] + [""]
    (out / "index.rst").write_text("\n".join(index), encoding="utf-8")
    return names
