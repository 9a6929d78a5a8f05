"""Each source's videos are encoded as its official data was (dwm-recipe.md section 14),
checked against outside references: the x264 settings written into the released real-world
examples, and Blender's own FFmpeg output for the TRUMANS static pass."""

import subprocess
import sys

import numpy as np
import pytest

from dwm_data.errors import DwmDataError
from dwm_data.recipe import Recipe, load_recipe
from dwm_data.video import encode, probe, x264_options

# Settings that follow the machine (thread counts), not the encoder settings.
MACHINE = {"threads", "lookahead_threads"}
BLENDER_STATIC = """
import bpy, sys
scene = bpy.context.scene
render = scene.render
render.engine = "BLENDER_WORKBENCH"
render.resolution_x, render.resolution_y, render.resolution_percentage = 64, 48, 100
render.fps, scene.frame_start, scene.frame_end = 8, 1, 3
render.image_settings.file_format = "FFMPEG"
render.ffmpeg.format, render.ffmpeg.codec = "MPEG4", "H264"
render.ffmpeg.constant_rate_factor = "MEDIUM"  # blender_ego_static_impl.py
render.ffmpeg.ffmpeg_preset = "REALTIME"
render.filepath = sys.argv[-1]
bpy.ops.render.render(animation=True)
"""


def noise(frames: int, width: int, height: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (frames, height, width, 3), dtype=np.uint8)


def differences(ours: dict, official: dict, ignore: set[str]) -> dict:
    keys = (set(ours) | set(official)) - ignore
    return {k: (ours.get(k), official.get(k)) for k in keys if ours.get(k) != official.get(k)}


@pytest.mark.parametrize("name", ["video", "static", "hand"])
def test_aria_videos_are_encoded_as_the_released_real_world_examples(shared_data, name):
    sub = {"video": "videos", "static": "videos_static", "hand": "videos_hands"}[name]
    official = shared_data(f"dwm_realworld/realworld_dynamic/{sub}/00013.mp4")
    codec = load_recipe("dwm").codecs.to_codecs("aria")[name]
    ours = encode(noise(9, 128, 96), 8, codec)  # x264 writes no size into its settings
    assert probe(ours).pix_fmt == probe(official).pix_fmt
    assert differences(x264_options(ours), x264_options(official), MACHINE) == {}


def test_trumans_static_is_encoded_as_blenders_ffmpeg_output(tmp_path):
    """Blender's CRF MEDIUM, preset REALTIME and GOP, read back from the file Blender writes."""
    pytest.importorskip("bpy")
    script = tmp_path / "static.py"
    script.write_text(BLENDER_STATIC)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "static_")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (blender,) = tmp_path.glob("static_*.mp4")
    codec = load_recipe("dwm").codecs.to_codecs("trumans")["static"]
    ours = encode(noise(3, 64, 48), 8, codec)
    assert probe(ours).pix_fmt == probe(blender).pix_fmt == "yuv420p"
    assert differences(x264_options(ours), x264_options(blender), MACHINE) == {}


def test_sources_take_the_official_settings_over_the_shared_ones():
    recipe = load_recipe("dwm")
    assert {n: c.crf for n, c in recipe.codecs.to_codecs("taste").items()} == {
        "video": 23,
        "static": 23,
        "hand": 23,
    }
    assert {c.pix_fmt for c in recipe.codecs.to_codecs("taste").values()} == {"yuv420p"}
    assert recipe.codecs.to_codecs("trumans")["hand"].pix_fmt == "yuv420p"
    assert recipe.codecs.to_codecs("aria")["hand"].pix_fmt == "yuv444p"
    assert recipe.codecs.to_codecs()["hand"].pix_fmt == "yuv444p"  # imports that re-encode
    # a preset tuned for speed (tiny) reaches every source that does not name its own preset
    tiny = load_recipe("tiny").codecs
    assert tiny.to_codecs("taste")["video"].preset == "ultrafast"
    assert tiny.to_codecs("trumans")["static"].preset == "superfast"
    # resolved on load: the recipe a run saves for its workers says the same
    assert Recipe.model_validate(load_recipe("tiny").dump()).codecs == tiny
    # yuv444p hands stay an option
    chosen = load_recipe("dwm", ["codecs.taste.hand.pix_fmt=yuv444p"]).codecs
    assert chosen.to_codecs("taste")["hand"].pix_fmt == "yuv444p"


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("codecs.tastee.hand.crf=20", "tastee"),
        ("codecs.taste.hands.crf=20", "hands"),
        ("codecs.taste.hand.pix_fmt=rgb24", "pix_fmt"),
        ("codecs.aria.video.preset=fastest", "preset"),
        ("codecs.trumans.static.crf=99", "crf"),
    ],
)
def test_codec_sections_are_checked(override, match):
    with pytest.raises(DwmDataError, match=match) as error:
        load_recipe("dwm", [override])
    assert "\n" not in str(error.value)
