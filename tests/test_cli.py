import subprocess
import sys

import pytest

from dwm_data.errors import MissingExtraError
from dwm_data.extras import require

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
    commands = ["import-dwm", "export-dwm", "inspect", "preview", "status", "demo", "bench"]
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
