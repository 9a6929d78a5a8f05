"""Sampling the world model (`dwm-data sample`), and `dwm-data eval` end to end (its metrics:
test_metrics.py and test_eval.py)."""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import json

import numpy as np
import pytest
from test_model import (  # noqa: F401
    FRAMES,
    HEIGHT,
    WIDTH,
    shard_dir,
    tiny_base,
    trained_like,
)

from dwm_data.errors import DwmDataError
from dwm_data.recipe import load_recipe
from dwm_data.video import Codec, decode, encode, probe
from dwm_model.generate import WorldModel, load_inputs, preview, write_video
from dwm_model.model import save_weights


@pytest.fixture(scope="module")
def world_model(tiny_base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    save_weights(
        trained_like(tiny_base),
        folder,
        {"rank": 4, "alpha": 8, "base_model": str(tiny_base), "text_length": 32},
    )
    return WorldModel.from_weights(folder)


@pytest.fixture(scope="module")
def inputs(shard_dir):
    shards = sorted(shard_dir.glob("*.tar"))
    loaded = load_inputs(shards, "syn-0001", None, None, None, load_recipe("tiny").video)
    return loaded.static, loaded.hand, loaded.prompt, loaded.truth


def test_generate_gives_a_video_of_the_input_geometry(world_model, inputs):
    static, hand, prompt, truth = inputs
    assert prompt == "pick up the red cup" and truth.shape == (FRAMES, HEIGHT, WIDTH, 3)
    video = world_model.generate(static, hand, prompt, steps=2, seed=5)
    assert video.shape == (FRAMES, HEIGHT, WIDTH, 3) and video.dtype == np.uint8
    assert video.std() > 0


@pytest.mark.slow
def test_generate_is_seeded_and_follows_hand_and_prompt(world_model, inputs):
    static, hand, prompt, _ = inputs
    first = world_model.generate(static, hand, prompt, steps=2, seed=5)
    assert np.array_equal(first, world_model.generate(static, hand, prompt, steps=2, seed=5))
    assert not np.array_equal(first, world_model.generate(static, hand, prompt, steps=2, seed=6))
    no_hand = world_model.generate(static, hand, prompt, steps=2, seed=5, use_hand=False)
    no_prompt = world_model.generate(static, hand, prompt, steps=2, seed=5, use_prompt=False)
    assert not np.array_equal(first, no_hand) and not np.array_equal(first, no_prompt)
    # navigation only is an all-black hand video (frames without hands), not zeroed latents
    black = world_model.generate(static, np.zeros_like(hand), prompt, steps=2, seed=5)
    assert np.array_equal(no_hand, black)


def test_generate_refuses_inputs_the_model_cannot_take(world_model, inputs):
    static, hand, prompt, _ = inputs
    with pytest.raises(DwmDataError, match="4k\\+1"):
        world_model.generate(static[:8], hand[:8], prompt, steps=2)
    with pytest.raises(DwmDataError, match="hand video"):
        world_model.generate(static, hand[:5], prompt, steps=2)


def test_frames_convert_as_the_official_export_and_round_trip_the_loader():
    import torch

    from dwm_model.data import to_tensor
    from dwm_model.generate import decoded_frames, to_frames

    decoded = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0]).reshape(1, 1, 1, 5).expand(3, 1, 1, 5)
    # (frame * 255).astype(np.uint8) of (x / 2 + 0.5): 0, 63.75, 127.5, 254.87, 255 truncated
    assert decoded_frames(decoded)[0, 0, :, 0].tolist() == [0, 63, 127, 254, 255]
    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    assert np.array_equal(to_frames(to_tensor(frames)), frames)


def test_inputs_from_files_and_missing_key(shard_dir, inputs, tmp_path):
    static, hand, _, _ = inputs
    (tmp_path / "s.mp4").write_bytes(encode(static, 8, Codec(preset="ultrafast")))
    (tmp_path / "h.mp4").write_bytes(encode(hand, 8, Codec(preset="ultrafast")))
    tiny = load_recipe("tiny").video
    s, h, text, truth, fitted = load_inputs(
        None, None, tmp_path / "s.mp4", tmp_path / "h.mp4", "wave", tiny
    )
    assert s.shape == h.shape == static.shape and text == "wave" and truth is None
    assert fitted == ()  # already at the recipe's geometry: decoded as stored
    with pytest.raises(DwmDataError, match="no sample with key nope"):
        load_inputs(sorted(shard_dir.glob("*.tar")), "nope", None, None, None, tiny)
    with pytest.raises(DwmDataError, match="--static"):
        load_inputs(None, None, tmp_path / "s.mp4", None, None, tiny)


def test_outputs_are_whole_videos_and_a_side_by_side_preview(inputs, tmp_path):
    static, hand, _, truth = inputs
    write_video(tmp_path / "out.mp4", preview(static, hand, truth), 8)
    info = probe(tmp_path / "out.mp4")
    assert (info.frames, info.width, info.height) == (FRAMES, 3 * WIDTH, HEIGHT)
    assert not list(tmp_path.glob("*.tmp"))
    assert np.abs(decode(tmp_path / "out.mp4")[:, :, :WIDTH].astype(int) - static).mean() < 4


@pytest.mark.slow
def test_cli_encode_train_sample_eval(shard_dir, tiny_base, tmp_path, monkeypatch):
    """The four commands end to end on the tiny recipe (a few steps), as a user runs them."""
    import shutil

    from typer.testing import CliRunner

    from cli.main import app

    cache = tmp_path / "cache"
    shutil.copytree(tiny_base, cache / f"tiny-{WIDTH}x{HEIGHT}x{FRAMES}")
    monkeypatch.setenv("DWM_MODEL_CACHE", str(cache))
    shards = tmp_path / "shards"
    shutil.copytree(shard_dir, shards)
    runner = CliRunner()
    tiny = ["--recipe", "tiny", "--set", "train.max_steps=4", "--set", "train.checkpoint_every=2"]

    def ok(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "encoded 6 samples of 2 shards" in ok("encode", shards, "--recipe", "tiny")
    assert "trained to step 4" in ok("train", shards, "--out", tmp_path / "run", "--quiet", *tiny)
    assert "cached latents" in ok(
        "train", shards, "--out", tmp_path / "run", "--resume", "--quiet", *tiny
    )
    ok(
        "sample",
        tmp_path / "run",
        tmp_path / "s.mp4",
        "--shards",
        shards,
        "--key",
        "syn-0002",
        "--steps",
        "2",
        "--recipe",
        "tiny",
    )
    assert probe(tmp_path / "s-preview.mp4").width == 4 * WIDTH
    ok(
        "sample",
        tmp_path / "run" / "checkpoints" / "step-000002",
        tmp_path / "n.mp4",
        "--static",
        tmp_path / "s.mp4",
        "--hand",
        tmp_path / "s.mp4",
        "--no-hand",
        "--steps",
        "2",
        "--recipe",
        "tiny",
    )
    assert probe(tmp_path / "n-preview.mp4").width == 3 * WIDTH
    output = ok(
        "eval",
        tmp_path / "run",
        shards,
        "--out",
        tmp_path / "eval",
        "--recipe",
        "tiny",
        "--set",
        "eval.limit=2",
        "--set",
        "eval.steps=2",
    )
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    scores = summary["mean"]
    assert summary["samples"] == 2 and np.isfinite(scores["psnr"]) and 0 < scores["ssim"] <= 1
    assert "psnr" in output and len(list((tmp_path / "eval" / "previews").glob("*.mp4"))) == 2


def test_given_videos_are_fitted_to_the_recipe(shared_data):
    from dwm_model.generate import fit_video

    clip = shared_data("dwm_realworld/realworld_dynamic/videos_static/00013.mp4")
    frames, note = fit_video(clip, load_recipe("tiny").video)
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert note == (
        "720x480, 49 frames at 8 fps -> the recipe's 64x48, first 9 frames at 8 fps (letterbox)"
    )
    assert fit_video(clip, load_recipe("dwm").video)[1] is None  # already the recipe's
    with pytest.raises(DwmDataError, match="clip too short: 49 frames"):
        fit_video(clip, load_recipe("tiny", ["video.frames=61"]).video)


@pytest.mark.slow
def test_sample_fits_given_videos_to_the_recipe_as_import_does(shared_data, tiny_base, tmp_path):
    """`sample -r tiny --static/--hand` with the official 720x480x49 clip runs at the recipe's
    64x48x9 (it ran at the files' size), and the model is handed the frames that `import-dwm
    -r tiny` stores for the same clip (so `--static` and `--key` agree)."""
    from typer.testing import CliRunner

    from cli.main import app
    from dwm_data.build import build

    clip = shared_data("dwm_realworld/realworld_dynamic")
    listing = tmp_path / "list.txt"
    listing.write_text("realworld_dynamic/videos/00013.mp4\n")
    options = {"source": str(listing), "data_root": str(clip.parent)}
    build("import-dwm", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    shards = sorted((tmp_path / "run" / "shards").glob("*.tar"))
    tiny = load_recipe("tiny").video
    imported = load_inputs(shards, "dwm-realworld_dynamic-00013", None, None, None, tiny)
    files = {
        name: clip / sub / "00013.mp4"
        for name, sub in (("s", "videos_static"), ("h", "videos_hands"))
    }
    given = load_inputs(None, None, files["s"], files["h"], "", tiny)
    assert imported.fitted == () and len(given.fitted) == 2
    assert "720x480, 49 frames at 8 fps -> the recipe's 64x48, first 9 frames" in given.fitted[0]
    for ours, theirs in ((given.static, imported.static), (given.hand, imported.hand)):
        assert ours.shape == theirs.shape == (FRAMES, HEIGHT, WIDTH, 3)
        assert np.abs(ours.astype(int) - theirs).mean() < 2  # the shard's re-encoding only

    # A shard of the full-size clip is read as eval reads it, whatever sample was asked for.
    from dwm_model.data import make_loader, video_decoder
    from dwm_model.generate import to_frames

    build("import-dwm", options, load_recipe("dwm"), tmp_path / "full", progress=False)
    full = sorted((tmp_path / "full" / "shards").glob("*.tar"))
    keyed = load_inputs(full, "dwm-realworld_dynamic-00013", None, None, None, tiny)
    assert keyed.fitted == (
        "dwm-realworld_dynamic-00013: 720x480, 49 frames -> the recipe's 64x48, 9 frames, "
        "as train and eval read it",
    )
    stage = video_decoder(tiny.frames, tiny.width, tiny.height, tiny.resize)
    evaluated = next(iter(make_loader([str(p) for p in full], stage, 1, train=False)))
    assert np.array_equal(keyed.static, to_frames(evaluated["static"][0]))
    assert np.array_equal(keyed.truth, to_frames(evaluated["video"][0]))

    folder = tmp_path / "weights"
    save_weights(
        trained_like(tiny_base), folder, {"rank": 4, "alpha": 8, "base_model": str(tiny_base)}
    )
    args = ["sample", folder, tmp_path / "out.mp4", "--static", files["s"], "--hand", files["h"]]
    args += ["--recipe", "tiny", "--steps", "1"]
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "fitted static: 720x480" in result.output and "fitted hand: 720x480" in result.output
    info = probe(tmp_path / "out.mp4")
    assert (info.frames, info.width, info.height) == (FRAMES, WIDTH, HEIGHT)


def test_conditions_are_built_as_the_official_inference(world_model, inputs):
    """snuvclab/dwm inference: an all-zero mask video (mask channel = VAE scaling everywhere), the
    hand video's latents a sample of the VAE distribution (`latent_dist.sample()`)."""
    import torch

    from dwm_model.data import to_tensor
    from dwm_model.model import inpaint_mask

    static, hand, prompt, _ = inputs
    zeros = torch.zeros(1, 1, FRAMES, HEIGHT, WIDTH)
    latent = (3, HEIGHT // 8, WIDTH // 8)
    assert torch.equal(inpaint_mask(zeros, *latent, 0.7), torch.full((1, 3, 1, 6, 8), 0.7))
    assert inpaint_mask(torch.ones_like(zeros), *latent, 0.7).abs().max() == 0
    right = zeros.clone()
    right[..., WIDTH // 2 :] = 1  # generate the right half only
    mask = inpaint_mask(right, *latent, 0.7)
    assert torch.equal(mask[..., :4], torch.full((1, 3, 1, 6, 4), 0.7)) and mask[..., 4:].max() == 0

    vae, scaling = world_model.base.vae, world_model.base.scaling_factor
    with torch.no_grad():
        dist = vae.encode(to_tensor(hand)[None]).latent_dist
    official = dist.sample(generator=torch.Generator().manual_seed(9)) * scaling
    ours = world_model._encode(hand, torch.Generator().manual_seed(9))
    assert torch.allclose(ours, official.permute(0, 2, 1, 3, 4), atol=1e-6)
    assert not torch.allclose(ours, world_model._encode(hand), atol=1e-3)  # not the mean
