"""The wheel installs models/ as emframe.models, with the example data, and nothing top-level."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # build from a clean copy: setuptools never deletes stale files from an old build/
    src = tmp_path_factory.mktemp("src") / "emframe"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".hypothesis", "docs", "bench"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stderr[-3000:]}")
    (wheel,) = out.glob("emframe-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_models_are_a_subpackage(wheel_files):
    assert "emframe/models/__init__.py" in wheel_files
    assert "emframe/models/mixtures/gaussian.py" in wheel_files
    assert "emframe/models/hmm/emissions/base.py" in wheel_files
    top = {name.split("/")[0] for name in wheel_files}
    assert "models" not in top, "a top-level 'models' package would land in site-packages"


def test_example_data_ships(wheel_files):
    for name in ["old_faithful.csv", "airquality.csv", "earthquakes.csv", "digits_binary.csv",
                 "coffee.png", "nile.csv", "README.md"]:
        assert f"emframe/interfaces/data/{name}" in wheel_files


def test_wheel_holds_exactly_the_source_modules(wheel_files):
    # no module left behind by the layout change, none missing from the package list
    source = {f"emframe/{p.relative_to(ROOT / 'emframe').as_posix()}"
              for p in (ROOT / "emframe").rglob("*.py")}
    source |= {f"emframe/models/{p.relative_to(ROOT / 'models').as_posix()}"
               for p in (ROOT / "models").rglob("*.py")}
    assert {f for f in wheel_files if f.endswith(".py")} == source


def test_importing_the_engine_loads_no_model():
    code = "import sys, emframe, emframe.testing, emframe.interfaces.io; " \
           "print(any(m.startswith('emframe.models') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
