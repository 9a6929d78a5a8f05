"""The README says what the tool does: its commands and options exist, and its examples run as
written (from a project folder beside `shared/`, as in this checkout)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, shared_path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def example_blocks() -> list[str]:
    """The bash blocks that are `dwm-data` examples (not the setup commands)."""
    found = []
    for block in blocks("bash"):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
        if lines and all(ln.startswith("dwm-data ") for ln in lines):
            found.append(block)
    return found


def command_params() -> dict[str, set[str]]:
    """Every command's option names, from the app itself (source commands from the registry)."""
    import typer

    from cli.generate import source_command
    from cli.main import app
    from dwm_data.registry import SOURCES

    group = typer.main.get_command(app)
    out = {}
    for name, command in group.commands.items():
        command = source_command(SOURCES[name]) if name in SOURCES else command
        out[name] = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    return out


def test_commands_and_options_the_readme_names_exist():
    params = command_params()
    rows = re.findall(r"^\| `dwm-data ([\w-]+)[^|]*\|(.*)$", README, flags=re.M)
    assert len(rows) >= 10
    for command, text in rows:
        assert command in params, command
        for flag in re.findall(r"`(--[a-z][\w-]*)", text):
            assert flag in params[command], (command, flag)
    common = re.search(r"Common options of builders:(.*?)Exit codes", README, flags=re.S).group(1)
    flags = re.findall(r"`(--[a-z][\w-]*)", common)
    assert len(flags) >= 8
    from dwm_data.registry import SOURCES

    for source in SOURCES:
        assert set(flags) <= params[source], source
    for block in [*example_blocks(), *blocks("console")]:
        for line in block.splitlines():
            if line.startswith("dwm-data "):
                command = line.split()[1]
                used = {w.split("=")[0] for w in line.split() if w.startswith("-")}
                assert used <= params[command], line


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    shared_path("dwm_realworld/realworld_dynamic")
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    examples = example_blocks()
    assert examples, "the README has no dwm-data example"
    for block in examples:
        done = subprocess.run(
            ["bash", "-e", "-c", block],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, block + done.stdout + done.stderr
    assert (project / "runs/realworld/dataset.json").is_file()
    assert (project / "realworld.png").stat().st_size > 0
    assert any((project / "exported").rglob("*.mp4"))
    (snippet,) = blocks("python")
    done = subprocess.run(
        [sys.executable, "-c", snippet], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    sources = len(list((SHARED_DATA / "dwm_realworld/realworld_dynamic").rglob("videos/*.mp4")))
    assert len(printed) == sources and all("(9, 48, 64, 3)" in line for line in printed), printed
