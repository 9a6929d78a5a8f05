import os
import subprocess
import sys
import typing
from typing import Annotated, Literal

import pytest
from pydantic import Field

from dwm_data.builder import builder_class
from dwm_data.errors import MissingExtraError
from dwm_data.extras import require
from dwm_data.options import BuilderOptions, Cli
from dwm_data.registry import SOURCES, load

HEAVY = (
    "torch",
    "av",
    "numpy",
    "bpy",
    "mediapipe",
    "cv2",
    "pyrender",
    "gsplat",
    "diffusers",
    "ray",
    "pydantic",
)


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_command_explains_itself():
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    commands = [*SOURCES, "export-dwm", "inspect", "preview", "status", "demo", "bench"]
    commands += ["sample", "simulate", "rank"]
    for command in commands:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_missing_extra_is_one_line_naming_the_extra():
    with pytest.raises(MissingExtraError) as info:
        require("surely_not_installed_module", "render")
    message = str(info.value)
    assert "\n" not in message and "pip install 'dwm-data[render]'" in message


def test_user_errors_are_one_red_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "import-dwm",
            str(tmp_path / "nope"),
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def help_text(*args: str) -> str:
    """`dwm-data ARGS --help` as a user sees it, wide enough that no choice list wraps."""
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TERMINAL_WIDTH": "250"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The entry point in-process: exit code, stdout, stderr."""
    from cli.main import main

    monkeypatch.setattr(sys, "argv", ["dwm-data", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_every_source_is_declared_once_in_the_registry():
    """The builder validates plan.json with the very model the command is made from, and every
    source has a demo stage."""
    for name, source in SOURCES.items():
        assert builder_class(name).Options is load(source.options), name
        assert callable(load(source.demo)), name
        if source.section:
            assert source.knobs is not None, name


@pytest.mark.parametrize("name", list(SOURCES))
def test_source_help_lists_every_option_with_its_choices(name):
    text = help_text(name)
    for field_name, field in load(SOURCES[name].options).model_fields.items():
        traits = next((m for m in field.metadata if isinstance(m, Cli)), Cli())
        if traits.argument or traits.out:
            continue
        flag = "--" + (traits.name or field_name).replace("_", "-")
        assert flag in text, (name, flag)
        assert field.description.split()[0] in text, (name, flag)
        choices = [a for a in typing.get_args(field.annotation) if a is not type(None)]
        if typing.get_origin(field.annotation) is typing.Literal:
            assert "<" + "|".join(choices) + ">" in text, (name, flag)
    # flags take no value, so their help must not show one
    for line in text.splitlines():
        if "--retry-failed" in line or "--overwrite" in line or "--quiet" in line:
            assert "<bool>" not in line, line
    assert "<local|ray|slurm>" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["render-trumans", "ROOT", "OUT", "--body", "foo"],
            "'foo' is not one of 'blend', 'smplx'",
        ),
        (["render-trumans", "ROOT", "OUT", "--clips", "foo"], "is not one of 'all', 'interaction'"),
        (["aria-capture", "CAP", "OUT", "--hands", "foo"], "'foo' is not one of 'mps'"),
        (["import-dwm", "SRC", "OUT", "-w", "0"], "'--workers' / '-w'"),
        (["import-dwm", "SRC", "OUT", "--tasks", "0"], "'--tasks'"),
        (["build-taste", "SRC"], "Missing argument 'out'"),
        (["import-dwm", "SRC", "OUT", "--nope"], "No such option: --nope"),
        (
            ["render-trumans", "ROOT", "OUT", "--set", "trumans.sampels=16"],
            "unknown key 'trumans.sampels' (allowed: frame_skip, clip_stride, fov, samples,",
        ),
        (["import-dwm", "SRC", "OUT", "--set", "run.unit_timeout=0"], "run.unit_timeout"),
    ],
)
def test_bad_usage_is_one_red_line_and_exit_2_before_any_work(
    tmp_path, monkeypatch, capsys, args, message
):
    args = [str(tmp_path / a) if a.isupper() else a for a in args]
    code, stdout, stderr = run_main(monkeypatch, capsys, *args)
    assert code == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "OUT").exists()  # nothing planned, nothing written


def test_cli_options_become_the_builders_options(tmp_path, monkeypatch):
    """Paths are stored resolved, repeatable options as lists, OUT/<name> fields filled in."""
    from typer.testing import CliRunner

    import cli.generate
    from cli.main import app

    runs = []
    monkeypatch.setattr(cli.generate, "run_build", lambda *a, **k: runs.append((a, k)))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["render-trumans", "rel", "out", "--scene", "a", "--scene", "b", "--body", "smplx"],
    )
    result2 = runner.invoke(app, ["aria-capture", "cap", "out", "--start", "2s", "-w", "3"])
    assert result.exit_code == 0 and result2.exit_code == 0, result.output + result2.output
    (name, options, out, recipe, overrides), run = runs[0]
    assert name == "render-trumans" and recipe == "dwm" and overrides is None
    assert options["root"] == str(tmp_path / "rel") and options["scenes"] == ["a", "b"]
    assert options["body"] == "smplx" and options["recordings"] == []
    load(SOURCES[name].options).model_validate(options)
    (name, options, out, _, _), run = runs[1]
    assert options["splats"] == str(tmp_path / "out" / "splats") and options["starts"] == ["2s"]
    assert run["workers"] == 3 and run["retry_failed"] is False
    load(SOURCES[name].options).model_validate(options)


class Bounded(BuilderOptions):
    """Options with what the sources' models do not all use yet: bounds and a True flag."""

    source: Annotated[str, Cli(argument=True, path=True)] = Field(description="Input.")
    count: int = Field(4, gt=0, le=8, description="Clips per input.")
    scale: float = Field(1.0, gt=0, description="Scale of the input.")
    mode: Literal["fast", "exact"] | None = Field(None, description="How.")
    denoise: bool = Field(True, description="Denoise the frames.")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--count", "0"], 2, "Invalid value for '--count'"),
        (["--count", "9"], 2, "Invalid value for '--count'"),
        (["--scale", "-1"], 2, "Invalid value for '--scale'"),
        (["--mode", "slow"], 2, "'slow' is not one of 'fast', 'exact'"),
        (["--count", "8", "--scale", "0.5", "--mode", "exact", "--no-denoise"], 0, ""),
    ],
)
def test_bounds_choices_and_flags_of_an_options_model(tmp_path, monkeypatch, args, code, message):
    import typer

    import cli.generate
    from cli.generate import source_command
    from dwm_data.registry import Source

    runs = []
    monkeypatch.setattr(cli.generate, "run_build", lambda *a, **k: runs.append(a))
    source = Source("bounded", "Test.", builder="-", options=f"{__name__}:Bounded")
    command = source_command(source)
    try:
        command.main(["in", str(tmp_path / "out"), *args], standalone_mode=False)
        exit_code, text = 0, ""
    except typer.TyperException as exc:  # a usage error, as main() prints it
        exit_code, text = exc.exit_code, exc.format_message()
    assert exit_code == code and message in text, text
    if code == 0:
        ((_, options, *_),) = runs
        assert options["count"] == 8 and options["scale"] == 0.5 and options["mode"] == "exact"
        assert options["denoise"] is False
        Bounded.model_validate(options)


@pytest.mark.slow
def test_demo_runs_every_stage_on_its_own_data(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--out", str(tmp_path / "demo"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "demo" / "import-dwm" / "preview.png").exists()
    assert (tmp_path / "demo" / "import-dwm" / "run" / "dataset.json").exists()
    assert "dwm-data demo" in out.stdout
