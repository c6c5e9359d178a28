"""The wheel installs models/ as emframe.models, with the example data, and nothing top-level."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stderr[-3000:]}")
    (wheel,) = out.glob("emframe-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_models_are_a_subpackage(wheel_files):
    assert "emframe/models/__init__.py" in wheel_files
    assert "emframe/models/gaussian_mixture.py" in wheel_files
    top = {name.split("/")[0] for name in wheel_files}
    assert "models" not in top, "a top-level 'models' package would land in site-packages"


def test_example_data_ships(wheel_files):
    for name in ["old_faithful.csv", "airquality.csv", "earthquakes.csv", "digits_binary.csv",
                 "coffee.png", "README.md"]:
        assert f"emframe/data/{name}" in wheel_files


# The command line and the loader of saved files are the application layer: they
# look models up by name at call time. Nothing else in the engine may name them.
APPLICATION_LAYER = {"cli.py", "io.py", "__main__.py"}


def test_engine_never_imports_a_model():
    for path in (ROOT / "emframe").glob("*.py"):
        if path.name in APPLICATION_LAYER:
            continue
        code = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.lstrip().startswith(("import ", "from "))]
        assert not [ln for ln in code if "models" in ln], path.name


def test_importing_the_engine_loads_no_model():
    code = "import sys, emframe, emframe.testing, emframe.interfaces.io; " \
           "print(any(m.startswith('emframe.models') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
