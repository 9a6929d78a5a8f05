"""The demo stage end to end: a rendered clip with known hands, `mano-fit` on a generated MANO
model, the mesh hand video where the hand is, and the hand inpainted out of the static frame."""

from __future__ import annotations

import numpy as np
import pytest

from dwm_data.build import build
from dwm_data.fixtures.taste import PROMPT, _table, demo_stage
from dwm_data.hands.track import HandTrack
from dwm_data.recipe import load_recipe
from dwm_data.store import read_decoded
from dwm_data.video import fit_size, place


@pytest.mark.slow
def test_demo_stage_mano_fit_mesh_and_clean_static(tmp_path):
    import cv2

    options = demo_stage(tmp_path / "input", "tiny")
    recipe = load_recipe("tiny", ["video.width=192", "video.height=128"])
    result = build("build-taste", options, recipe, tmp_path / "run", progress=False)
    assert result.ok, result.status.failures
    ((sample, frames),) = list(read_decoded(tmp_path / "run"))
    assert sample.prompt == PROMPT and sample.key == "clip-sweep"
    assert sample.meta["hands"] | {"cleanup": None} == {
        "representation": "mesh",
        "backend": "mano-fit",
        "landmarks": "file",
        "frames_with_hands": 9,
        "cleanup": None,
    }
    # the scene without the hand, letterboxed like the clip
    w, h = fit_size(320, 180, 192, 128, "letterbox")
    background = place(cv2.resize(_table(320, 180), (w, h), interpolation=cv2.INTER_AREA), 192, 128)
    actor = np.abs(frames["video"].astype(int) - background).max(axis=-1) > 40
    drawn = frames["hand"].max(axis=-1) > 40
    iou = (actor & drawn).sum() / (actor | drawn).sum()
    assert iou > 0.75, f"hand video overlaps the actor by IoU {iou:.2f}"
    right = np.array([0.8, 0.4, 0.4]) * 255
    assert np.abs(np.median(frames["hand"][drawn], axis=0) - right).max() < 60
    track = HandTrack.from_npz(sample.hands)
    assert track.valid[:, 1].all() and track.mano["hand_pose"].shape == (9, 2, 45)
    # the static frame shows the scene where the hand was at frame 0
    static = sample.meta["static"]
    assert static["clean"] and static["hands_removed"] == 1
    hand_at_0 = actor[0]
    before = np.abs(frames["video"][0].astype(int) - background)[hand_at_0].mean()
    after = np.abs(frames["static"][0].astype(int) - background)[hand_at_0].mean()
    assert after < before / 2, f"inpainting left {after:.0f} of {before:.0f} mean difference"
