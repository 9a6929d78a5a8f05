import subprocess
import sys
from fractions import Fraction

import pytest
from pydantic import BaseModel

from dwm_data import registry
from dwm_data.errors import DwmDataError
from dwm_data.recipe import load_recipe


def test_official_recipe_has_the_official_settings():
    recipe = load_recipe("dwm")
    assert (recipe.video.frames, recipe.video.width, recipe.video.height, recipe.video.rate) == (
        49,
        720,
        480,
        Fraction(8),
    )
    assert recipe.codecs.video.crf == 18 and recipe.codecs.hand.pix_fmt == "yuv444p"
    assert recipe.codecs.static.pix_fmt == "yuv420p"


def test_tiny_starts_from_dwm_and_overrides_apply():
    recipe = load_recipe("tiny", ["video.frames=17", "shards.maxsize=2MB", "run.workers=1"])
    assert recipe.name == "tiny" and recipe.video.frames == 17 and recipe.video.width == 64
    assert recipe.codecs.hand.pix_fmt == "yuv444p"  # inherited from the base
    assert recipe.shards.maxsize == 2_000_000 and recipe.run.workers == 1


def test_typos_and_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(DwmDataError, match=r"unknown key 'vidoe' \(allowed: name, video, codecs"):
        load_recipe("tiny", ["vidoe.frames=3"])
    with pytest.raises(DwmDataError, match="video.frames"):
        load_recipe("tiny", ["video.frames=many"])
    with pytest.raises(DwmDataError, match="not a multiple of 16"):
        load_recipe("tiny", ["video.width=70"])
    with pytest.raises(DwmDataError, match="recipe 'nope' not found"):
        load_recipe("nope")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # every source's own section is checked on load, before any plan is written
        (
            "trumans.sampels=16",
            "unknown key 'trumans.sampels' (allowed: frame_skip, clip_stride, fov, samples, "
            "denoise, threads)",
        ),
        ("taste.hfov=70", "unknown key 'taste.hfov' (allowed: hfov_deg, detect_height, max_gap)"),
        ("aria.splat.stepz=3", "unknown key 'aria.splat.stepz' (allowed: steps, sh_degree,"),
        ("train.lora_rnak=4", "unknown key 'train.lora_rnak' (allowed: base_model,"),
        ("trumans.samples=many", "trumans.samples: Input should be a valid integer"),
        # counts, sizes and timeouts must be positive
        ("run.workers=0", "run.workers: Input should be greater than 0"),
        ("run.tasks=0", "run.tasks: Input should be greater than 0"),
        ("run.unit_timeout=0", "run.unit_timeout: Input should be greater than 0"),
        ("shards.maxsize=0", "shards.maxsize: Input should be greater than 0"),
        ("shards.maxcount=-1", "shards.maxcount: Input should be greater than 0"),
        ("video.frames=0", "video.frames: Input should be greater than 0"),
        ("trumans.frame_skip=0", "trumans.frame_skip: Input should be greater than 0"),
    ],
)
def test_every_section_is_checked_on_load_in_one_line(override, message):
    with pytest.raises(DwmDataError) as info:
        load_recipe("tiny", [override])
    text = str(info.value)
    assert text.startswith("recipe tiny: ") and message in text and "\n" not in text


def test_every_section_has_an_owner_with_a_light_model():
    """The registry names a model for each section; loading them imports no heavy module."""
    code = (
        "import sys\n"
        "from dwm_data import registry\n"
        "for target in registry.sections().values():\n"
        "    registry.load(target)\n"
        "print(sorted(m for m in ('torch', 'cv2', 'bpy', 'mediapipe', 'gsplat', 'diffusers')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    owned = {"trumans", "taste", "aria", "ego", "caption", "train", "sample", "eval"}
    assert set(registry.sections()) == owned


def test_builder_sections_are_typed_by_their_owner(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny\ntaste:\n  hfov_deg: 75\n")

    class TasteKnobs(BaseModel):
        hfov_deg: float = 60.0

    recipe = load_recipe(path)
    assert recipe.section("taste", TasteKnobs).hfov_deg == 75
    assert load_recipe("tiny").section("taste", TasteKnobs).hfov_deg == 60
    assert recipe.dump()["taste"] == {"hfov_deg": 75}


def test_builder_options_are_checked_in_one_line(tiny_recipe):
    from dwm_data.builder import make_builder

    with pytest.raises(DwmDataError) as info:
        make_builder("import-dwm", tiny_recipe, {"sourse": "x"})
    assert str(info.value) == (
        "import-dwm: unknown option 'sourse' (allowed: source, data_root, license, "
        "allow_missing_prompt)"
    )
    with pytest.raises(DwmDataError, match="render-trumans: option body: Input should be"):
        make_builder("render-trumans", tiny_recipe, {"root": "x", "body": "foo"})
