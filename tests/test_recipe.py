from fractions import Fraction

import pytest
from pydantic import BaseModel

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
    with pytest.raises(DwmDataError, match="unknown recipe key"):
        load_recipe("tiny", ["vidoe.frames=3"])
    with pytest.raises(DwmDataError, match="video.frames"):
        load_recipe("tiny", ["video.frames=many"])
    with pytest.raises(DwmDataError, match="not a multiple of 16"):
        load_recipe("tiny", ["video.width=70"])
    with pytest.raises(DwmDataError, match="recipe 'nope' not found"):
        load_recipe("nope")


def test_builder_sections_are_typed_by_their_owner(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny\ntaste:\n  backend: skeleton\n")

    class TasteKnobs(BaseModel):
        backend: str = "mediapipe"

    recipe = load_recipe(path)
    assert recipe.section("taste", TasteKnobs).backend == "skeleton"
    assert load_recipe("tiny").section("taste", TasteKnobs).backend == "mediapipe"
    assert recipe.dump()["taste"] == {"backend": "skeleton"}
