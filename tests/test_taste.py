"""build-taste on the real fixed-camera clip and on bad input; the TASTE-Rob layout, captions
and split lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dwm_data.build import build
from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.hands.track import HandTrack
from dwm_data.recipe import load_recipe
from dwm_data.store import read_decoded
from dwm_data.taste.captions import caption_key, read_captions
from dwm_data.taste.layout import find_clips
from dwm_data.video import Codec, encode

REAL_CLIP = "dwm_realworld/realworld_fixed/pour_coke.mp4"
CAPTION = "Pour the coke from the can into the measuring jug."


def write_captions(path: Path, rows: dict[str, list[tuple]]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for sheet, values in rows.items():
        ws = book.create_sheet(sheet)
        ws.append(["id", "scene", "caption"])
        for row in values:
            ws.append(list(row))
    book.save(path)


def taste_root(root: Path, clip: Path, caption: bool = True) -> Path:
    """A TASTE-Rob release layout holding the real clip (linked, never copied) as one id."""
    scene = root / "DoubleHand" / "Office_55670_to_57854"
    scene.mkdir(parents=True)
    (scene / "55672.mp4").symlink_to(clip)
    rows = [(55672, "office", CAPTION)] if caption else [(1, "office", "another clip")]
    write_captions(root / "captions.xlsx", {"Double-Hand": rows, "Single-Hand": []})
    return root


def run(source: Path, out: Path, recipe: str = "tiny", **options):
    return build(
        "build-taste", {"source": str(source), **options}, load_recipe(recipe), out, progress=False
    )


def skin(frames: np.ndarray) -> np.ndarray:
    """A plain skin-tone test in YCrCb (the classic Chai & Ngan box)."""
    import cv2

    ycrcb = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb) for f in frames])
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= 135) & (cr <= 180) & (cb >= 85) & (cb <= 135)


def test_captions_and_layout(tmp_path):
    write_captions(
        tmp_path / "captions.xlsx",
        {"Single-Hand": [(7, "Dining", "wipe")], "Double-Hand": [(9.0, "office", "type")]},
    )
    captions = read_captions(tmp_path / "captions.xlsx")
    assert captions[caption_key("SingleHand", "Dinning_1_to_9", "7")] == "wipe"
    assert captions[caption_key("DoubleHand", "Office_55670_to_57854", 9)] == "type"
    for path in ("DoubleHand/Office_55670_to_57854/9.mp4", "SingleHand/Dinning/7.mp4"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    clips = find_clips(tmp_path)
    assert [c.key_parts for c in clips] == [
        ("SingleHand", "Dinning", "7"),
        ("DoubleHand", "Office", "9"),
    ]
    listing = tmp_path / "split.txt"
    listing.write_text("taste_rob/DoubleHand/Office_55670_to_57854/videos/9.mp4\n")
    (listed,) = find_clips(listing, tmp_path)
    assert listed.path == str(tmp_path / "DoubleHand/Office_55670_to_57854/9.mp4")


@pytest.mark.slow
def test_real_clip_official_recipe(shared_data, tmp_path):
    """The full recipe once: 49 frames at 720x480, the right hand found and drawn on it."""
    root = taste_root(tmp_path / "taste", shared_data(REAL_CLIP))
    result = run(root, tmp_path / "run", recipe="dwm")
    assert result.ok, result.status.failures
    ((sample, frames),) = list(read_decoded(tmp_path / "run"))
    assert sample.key == "taste-DoubleHand-Office-55672"
    assert {name: f.shape for name, f in frames.items()} == {
        name: (49, 480, 720, 3) for name in ("video", "static", "hand")
    }
    assert sample.prompt == CAPTION
    assert sample.meta["source"]["license"] == "CC BY-NC 4.0"
    assert sample.meta["source_frames"][:3] == [1, 5, 9]  # 29.97 -> 8 fps, as ffmpeg's fps=8
    assert sample.meta["static"]["source_frame"] == 0  # select=eq(n,0)
    assert sample.meta["codecs"]["hand"] == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "crf": 23,
        "preset": "medium",
    }
    static = frames["static"].astype(int)
    assert np.abs(static - static[0]).mean() < 1.0, "frame 0 repeated (up to H.264 noise)"
    assert np.abs(static[0] - frames["video"][0].astype(int)).mean() < 2.0
    assert frames["video"][:, :30].max() < 20, "letterbox bars at the top"
    track = HandTrack.from_npz(sample.hands)
    # The actor's right hand is in view in frames 5-40 (checked by eye); found in most of them.
    visible = slice(6, 38)
    assert track.valid[visible, 1].mean() > 0.8
    assert not track.valid[:, 0].any(), "one actor, one right hand, no left"
    assert not track.valid[:4].any() and not track.valid[-6:].any()
    # The drawn skeleton lies on skin: most hand pixels are skin-coloured in the interaction video.
    drawn = frames["hand"].max(axis=-1) > 40
    on_skin = skin(frames["video"])[drawn].mean()
    assert on_skin > 0.6, f"only {on_skin:.0%} of the hand drawing lies on skin"
    assert skin(frames["video"])[~drawn].mean() < 0.1
    assert sample.meta["hands"]["representation"] == "skeleton"
    from dwm_data.preview import write_preview

    assert write_preview(tmp_path / "run", tmp_path / "preview.png") == [sample.key]
    assert (tmp_path / "preview.png").stat().st_size > 10_000


def test_real_clip_tiny_recipe(shared_data, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "pour.mp4").symlink_to(shared_data(REAL_CLIP))
    (folder / "pour.txt").write_text(CAPTION)
    result = run(folder, tmp_path / "run", license="CC-BY-4.0")
    assert result.ok, result.status.failures
    ((sample, frames),) = list(read_decoded(tmp_path / "run"))
    assert sample.key == "clip-pour"
    assert frames["hand"].shape == (9, 48, 64, 3)
    assert sample.meta["source"] == {
        "name": "folder",
        "path": str(folder / "pour.mp4"),
        "license": "CC-BY-4.0",
    }
    assert sample.meta["hands"]["frames_with_hands"] >= 2
    k = sample.meta["intrinsics"]
    assert (k["cx"], k["cy"]) == (31.5, 23.5)
    track = HandTrack.from_npz(sample.hands)
    found = track.valid[:, 1]
    # pixels refer to the 64x48 video: the drawing sits where the keypoints are
    for t in np.nonzero(found)[0]:
        x, y = np.round(track.keypoints_px[t, 1, 0]).astype(int)
        assert frames["hand"][t, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max() > 40


def _clip(path: Path, frames: int, fps: int = 8, width: int = 96, height: int = 64) -> None:
    rng = np.random.default_rng(0)
    scene = np.repeat(rng.integers(0, 255, (1, height, width, 3), dtype=np.uint8), frames, 0)
    path.write_bytes(encode(scene, fps, Codec(preset="ultrafast")))


def test_bad_inputs_are_recorded_failures(shared_data, tmp_path):
    root = taste_root(tmp_path / "taste", shared_data(REAL_CLIP), caption=False)
    scene = root / "DoubleHand" / "Office_55670_to_57854"
    _clip(scene / "100.mp4", frames=12)  # no hands in it
    _clip(scene / "101.mp4", frames=4)  # too short for 9 frames at 8 fps
    good = (scene / "100.mp4").read_bytes()
    (scene / "102.mp4").write_bytes(good[: len(good) // 3])  # corrupt
    write_captions(
        root / "captions.xlsx",
        {"Double-Hand": [(100, "office", "a"), (101, "office", "b"), (102, "office", "c")]},
    )
    result = run(root, tmp_path / "run")
    failures = {f["unit"]: (f["stage"], f["message"]) for f in result.status.failures}
    assert result.status.samples == 0 and len(failures) == 4
    assert failures["DoubleHand/Office/55672"][0] == "prompt"
    assert "captions.xlsx" in failures["DoubleHand/Office/55672"][1]
    assert failures["DoubleHand/Office/100"][0] == "hands"
    assert "no hands found" in failures["DoubleHand/Office/100"][1]
    assert failures["DoubleHand/Office/101"][0].startswith("video")
    assert "too short: 4 frames" in failures["DoubleHand/Office/101"][1]
    assert failures["DoubleHand/Office/102"][0].startswith("video")


def test_backend_without_files_fails_at_start(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    _clip(folder / "a.mp4", frames=12)
    with pytest.raises(MissingAssetError, match=r"MANO_LEFT\.pkl and MANO_RIGHT\.pkl"):
        run(folder, tmp_path / "run", backend="mano-fit", mano_dir=str(tmp_path))
    with pytest.raises(MissingAssetError, match="HaMeR"):
        run(folder, tmp_path / "run2", backend="hamer", hamer_dir=str(tmp_path))
    with pytest.raises(DwmDataError, match="mesh style needs"):
        run(folder, tmp_path / "run3", style="mesh")
    assert not (tmp_path / "run" / "shards").exists() or not any(
        (tmp_path / "run" / "shards").iterdir()
    )


@pytest.mark.slow
def test_cli_records_failures_and_reports_missing_models(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "clips"
    folder.mkdir()
    _clip(folder / "empty.mp4", frames=12)
    (folder / "empty.txt").write_text("nothing happens")
    cli = [sys.executable, "-m", "cli.main", "build-taste", str(folder)]
    done = subprocess.run(
        [*cli, str(tmp_path / "run"), "-r", "tiny", "-q"], capture_output=True, text=True
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no hands found" in done.stdout
    missing = subprocess.run(
        [*cli, str(tmp_path / "run2"), "--hands", "mano-fit", "--mano-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "MANO_LEFT.pkl" in missing.stderr
