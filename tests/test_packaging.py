"""The package as a user installs it: a wheel, into a fresh environment, away from the source.

The wheel is built from a copy of the project (so no build/ appears in the checkout) and
installed without its dependencies into a new venv that borrows them from this one through a
.pth file (a path line only: this venv's own .pth files, the editable install among them, are
not run), so nothing is downloaded and torch is not installed twice.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("pyproject.toml", "README.md", "dwm_data", "dwm_model", "cli", "recipes")


def run(*args: str | Path, cwd: Path) -> str:
    out = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_with_its_recipes(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        tmp_path / "dist",
        source,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("dwm_data-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"recipes/dwm.yaml", "recipes/tiny.yaml", "cli/main.py", "dwm_data/registry.py"} <= set(
        names
    )

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
        ).strip()
    )
    (site / "project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "-q",
        wheel,
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"  # not the checkout: only the installed package is seen
    elsewhere.mkdir()
    text = run(venv / "bin" / "dwm-data", "demo", "--help", cwd=elsewhere)
    assert "Usage: dwm-data demo" in text and "--recipe" in text
    assert "build-taste" in run(venv / "bin" / "dwm-data", "--help", cwd=elsewhere)
    loaded = run(
        python,
        "-c",
        "import dwm_data, recipes; from dwm_data.recipe import load_recipe\n"
        "r = load_recipe('tiny', ['trumans.samples=8'])\n"
        "print(dwm_data.__file__, recipes.__file__, r.name, r.video.width, load_recipe('dwm').video.frames)",
        cwd=elsewhere,
    ).split()
    assert all(Path(p).is_relative_to(site) for p in loaded[:2]), loaded
    assert loaded[2:] == ["tiny", "64", "49"]
