"""What every unit of a command needs is checked once, before the plan: one line, exit 2, and
nothing written; and no command writes into, or deletes, a folder that is not one of our runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dwm_data.build import build
from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.fixtures.dwm_layout import write_synthetic_layout
from dwm_data.recipe import load_recipe

PROJECT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=PROJECT, capture_output=True, text=True
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *words: str) -> None:
    message = result.stderr.strip()
    assert result.returncode == 2, result.stdout + result.stderr
    assert message.startswith("error:") and len(message.splitlines()) == 1, message
    assert all(word in message for word in words), message


def test_a_wrong_data_root_fails_the_command_before_any_unit(tmp_path):
    listing = tmp_path / "split.txt"
    listing.write_text("".join(f"clips/clip{i:02d}.mp4\n" for i in range(48)))
    (tmp_path / "elsewhere").mkdir()
    result = cli(
        "build-taste",
        str(listing),
        str(tmp_path / "run"),
        "--data-root",
        str(tmp_path / "elsewhere"),
        "--hands-files",
        "--recipe",
        "tiny",
    )
    assert_one_line_exit_2(result, "none of the 48 clips", "--data-root")
    assert not (tmp_path / "run").exists()
    result = cli("build-taste", str(listing), str(tmp_path / "run"), "--data-root", "/nonexistent")
    assert_one_line_exit_2(result, "/nonexistent")


def test_import_with_a_wrong_root_fails_before_any_unit(tmp_path):
    write_synthetic_layout(tmp_path / "layout", clips=2, frames=9, width=64, height=48)
    listing = tmp_path / "layout" / "list.txt"
    videos = sorted((tmp_path / "layout").rglob("videos/*.mp4"))
    listing.write_text("".join(f"{v.relative_to(tmp_path / 'layout')}\n" for v in videos))
    options = {"source": str(listing), "data_root": str(tmp_path)}
    with pytest.raises(DwmDataError, match="none of the 2 videos listed"):
        build("import-dwm", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_smplx_bodies_without_the_model_fail_before_any_unit(tmp_path):
    (tmp_path / "trumans").mkdir()
    options = {"root": str(tmp_path / "trumans"), "body": "smplx"}
    with pytest.raises(MissingAssetError, match="SMPL-X model"):
        build("render-trumans", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    options["smplx_model"] = str(tmp_path / "models")
    with pytest.raises(MissingAssetError, match=r"SMPLX_MALE\.npz.*models"):
        build("render-trumans", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    write_synthetic_layout(tmp_path / "layout", clips=1, frames=9, width=64, height=48)
    important = tmp_path / "important"
    important.mkdir()
    (important / "thesis.tex").write_text("\\chapter{Results}")
    for flags in ([], ["--overwrite"]):
        result = cli("import-dwm", str(tmp_path / "layout"), str(important), *flags)
        assert_one_line_exit_2(result, "not a dwm-data run folder", "nothing was changed")
    assert [p.name for p in important.iterdir()] == ["thesis.tex"]
    assert (important / "thesis.tex").read_text() == "\\chapter{Results}"
