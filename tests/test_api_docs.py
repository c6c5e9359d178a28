"""The API reference lists every public module, class and function (the pages Sphinx renders)."""

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"
sys.path.insert(0, str(DOCS))
import generate  # noqa: E402

sys.path.remove(str(DOCS))

MODULES = generate.modules()


def test_every_module_has_a_page():
    import emframe.models.hmm.emissions.gmm

    import emframe.core.engine
    import emframe.inference.gaussian.kernel
    import emframe.interfaces.cli.parser

    for mod in (emframe.core.engine, emframe.inference.gaussian.kernel,
                emframe.interfaces.cli.parser, emframe.models.hmm.emissions.gmm):
        assert mod.__name__ in MODULES
    assert not [m for m in MODULES if m.rpartition(".")[2].startswith("_")]


@pytest.mark.parametrize("name", MODULES)
def test_every_public_object_is_on_its_page(name):
    text = generate.page(name)
    module = importlib.import_module(name)
    for attr in generate.public_names(module):
        documented = re.search(rf"^\.\. auto(class|function|data):: {re.escape(name)}\.{attr}$",
                               text, re.M)
        linked = re.search(rf":py:(class|func):`{attr} <([\w.]+)\.\w+>`", text)
        if linked:  # the link points at a page that documents the object
            assert linked.group(2) in MODULES, f"{name}.{attr} links to a module without a page"
        foreign = f"``{attr}``: re-exported from" in text
        assert documented or linked or foreign, f"{name}.{attr} is missing from its page"


def test_facade_links_point_at_documented_objects():
    # each object is rendered once, on the page of the module that defines it
    for name in ("emframe", "emframe.models", "emframe.datasets", "emframe.plotting"):
        module = importlib.import_module(name)
        for attr in generate.public_names(module):
            obj = getattr(module, attr)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            home = obj.__module__
            assert home in MODULES
            assert re.search(rf"^\.\. auto(class|function):: {re.escape(home)}\.{obj.__name__}$",
                             generate.page(home), re.M), f"{home}.{obj.__name__}"


def test_estimator_pages_show_inherited_methods():
    # a user reading StudentTMixture's page must find fit, predict, score, ... there, not
    # only on the page of a base class it names
    for home, cls in [("emframe.models.robust.estimator", "StudentTMixture"),
                      ("emframe.models.hmm.autoregressive", "AutoRegressiveHMM"),
                      ("emframe.models.ssm.estimator", "LinearGaussianSSM")]:
        block = generate.page(home).split(f".. autoclass:: {home}.{cls}\n", 1)[1]
        options = block.split("\n\n", 1)[0]
        assert "   :inherited-members:" in options.splitlines(), cls
    params = generate.page("emframe.core.params")
    block = params.split(".. autoclass:: emframe.core.params.Params\n")[1]
    assert ":inherited-members:" not in block.split("\n\n", 1)[0]  # only estimators
