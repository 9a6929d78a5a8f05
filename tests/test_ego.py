"""build-ego: the plan of a folder or list of videos, recorded failures (too short, corrupt, no
prompt, too dark, a partial reconstruction), the user's own cameras (`--poses`: our npz and a
COLMAP model written by pycolmap itself), and structure from motion on a generated egocentric
video scored against its true camera path after a similarity alignment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_SPLAT, shared_path

from dwm_data.build import build
from dwm_data.ego.clips import choose_window, find_videos
from dwm_data.ego.trajectory import path_error, similarity
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.recipe import load_recipe
from dwm_data.video import Codec, decode, encode


def run(source: Path, out: Path, overrides: list[str] = (), **options):
    recipe = load_recipe("tiny", list(overrides))
    return build("build-ego", {"source": str(source), **options}, recipe, out, progress=False)


def failures(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for f in (out / "failures").glob("*.jsonl") for line in f.open()]
    return {row["unit"]: row for row in rows}


def test_plan_lists_videos_of_a_folder_and_a_list(tmp_path):
    (tmp_path / "a" / "b" / "empty").mkdir(parents=True)
    for name in ("a/b/one.MP4", "two.mov", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [k for k, _ in find_videos(tmp_path)] == ["a/b/one", "two"]
    listing = tmp_path / "list.txt"
    listing.write_text("# clips\ntwo.mov\n\na/b/one.MP4\n")
    assert find_videos(listing) == [
        ("two", tmp_path / "two.mov"),
        ("a/b/one", tmp_path / "a/b/one.MP4"),
    ]
    with pytest.raises(DwmDataError, match="no videos"):
        find_videos(tmp_path / "a" / "b" / "empty")
    with pytest.raises(DwmDataError, match="neither a folder nor a list"):
        find_videos(tmp_path / "missing")


def test_window_has_the_most_hand_frames_and_the_lead_asked_for():
    hands = np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 0], bool)
    assert choose_window(hands, 4, 0) == 5  # frames 5-8: a hand in each
    assert choose_window(hands, 4, 2) == 3  # two frames without a hand, then the most hands
    with pytest.raises(UnitError, match="no window of 4 frames"):
        choose_window(np.zeros(10, bool), 4, 0)


def test_short_corrupt_and_unprompted_videos_are_recorded_failures(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = np.full((4, 48, 64, 3), 128, np.uint8)
    (videos / "short.mp4").write_bytes(encode(frames, 8, Codec(preset="ultrafast")))
    (videos / "short.txt").write_text("too short")
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 500)
    (videos / "corrupt.txt").write_text("broken")
    (videos / "unprompted.mp4").write_bytes(encode(frames, 8, Codec(preset="ultrafast")))
    # an unlit room: the camera pans over texture too dark to record (levels 0 and 1)
    dark = (_texture(1)[0] * 0.004).astype(np.uint8)
    panned = np.stack([np.roll(dark, 3 * i, axis=1) for i in range(24)])
    (videos / "dark.mp4").write_bytes(encode(panned, 8, Codec(crf=0, preset="ultrafast")))
    (videos / "dark.txt").write_text("in the dark")
    (videos / "dark.hands.npz").write_bytes(_hand_in_view(24).to_npz())
    result = run(videos, tmp_path / "run", hands_files=True)
    assert not result.ok
    failed = failures(tmp_path / "run")
    assert set(failed) == {"short", "corrupt", "unprompted", "dark"}
    assert "clip too short" in failed["short"]["message"]
    assert failed["corrupt"]["stage"].startswith("video")
    assert failed["unprompted"]["stage"] == "prompt"
    assert failed["dark"]["stage"] == "cameras" and "too dark" in failed["dark"]["message"]


def _hand_in_view(count: int):
    """A right hand's keypoints in the lower right of a 240x180 frame, in every frame."""
    from dwm_data.hands.track import HandTrack

    track = HandTrack.empty(count)
    track.valid[:, 1] = True
    track.scores[:, 1] = 1.0
    fan = np.linspace(0, 1, 21)
    track.keypoints_px[:, 1] = np.stack([170 + 30 * fan, 175 - 50 * fan], axis=1)
    return track


def test_missing_poses_folder_fails_before_the_plan(tmp_path):
    with pytest.raises(DwmDataError, match="--poses"):
        run(tmp_path, tmp_path / "run", poses=str(tmp_path / "nowhere"))


def test_similarity_alignment_recovers_a_known_transform():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    truth = np.repeat(np.eye(4)[None], 20, axis=0)
    truth[:, :3, :3] = Rotation.random(20, random_state=1).as_matrix()
    truth[:, :3, 3] = np.cumsum(rng.normal(0, 0.1, (20, 3)), axis=0)
    world = np.eye(4)  # recovered = the truth seen in another world, 0.3x the size
    world[:3, :3] = Rotation.from_euler("xyz", [20, -50, 110], degrees=True).as_matrix()
    world[:3, 3] = [1.0, -2.0, 0.5]
    recovered = np.linalg.inv(world) @ truth
    recovered[:, :3, 3] *= 0.3
    scale, rotation, shift = similarity(recovered[:, :3, 3], truth[:, :3, 3])
    assert scale == pytest.approx(1 / 0.3) and np.allclose(rotation, world[:3, :3])
    error = path_error(recovered, truth)
    assert error.rmse_m < 1e-9 and error.max_rotation_deg < 1e-5
    recovered[5, :3, 3] += 0.05  # one centre off by 5 cm: seen in the error
    assert path_error(recovered, truth).rmse_m > 0.005


def _true_path(count: int) -> np.ndarray:
    from dwm_data.fixtures.ego import head_path

    return np.stack([head_path(t) for t in np.arange(count) / 16])


def test_poses_from_our_npz_and_from_a_colmap_model(tmp_path):
    import pycolmap

    from dwm_data.ego.poses import given_cameras
    from dwm_data.fixtures.ego import intrinsics

    truth, K = _true_path(8), intrinsics().matrix
    np.savez(tmp_path / "walk.poses.npz", cam_to_world=truth, K=K, width=240, height=180)
    frames = [2, 4, 6]
    cams = given_cameras(tmp_path, "walk", frames, 120, 90)
    assert np.allclose(cams.cam_to_world, truth[frames])
    assert cams.intrinsics.fx == pytest.approx(K[0, 0] / 2)
    # the same cameras as a COLMAP model, written by pycolmap (COLMAP's pixel centres at +0.5)
    model = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", 0.0, 240, 180)
    camera.params = [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]
    model.add_camera_with_trivial_rig(camera)
    for index in frames:
        world_to_cam = np.linalg.inv(truth[index])
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(world_to_cam[:3, :3]), world_to_cam[:3, 3])
        image = pycolmap.Image(f"frame_{index:06d}.jpg", [], 1, index + 1)
        model.add_image_with_trivial_frame(image, pose)
    colmap = tmp_path / "colmap"
    (colmap / "walk").mkdir(parents=True)
    model.write(str(colmap / "walk"))
    cams = given_cameras(colmap, "walk", frames, 240, 180)
    assert np.allclose(cams.cam_to_world, truth[frames], atol=1e-9)
    assert cams.intrinsics.cx == pytest.approx(K[0, 2])
    with pytest.raises(UnitError, match="no camera for source frame 3"):
        given_cameras(colmap, "walk", [2, 3], 240, 180)
    with pytest.raises(UnitError, match="aspect"):
        given_cameras(tmp_path, "walk", frames, 240, 240)


def _texture(count: int) -> np.ndarray:
    """Blurred noise: plenty of corners and SIFT features."""
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (count, 180, 240, 3), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in noise])


def test_dark_video_has_too_few_features(tmp_path):
    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct

    dark = (_texture(3) * 0.004).astype(np.uint8)  # 0 or 1: what an unlit room records
    with pytest.raises(UnitError, match="too few image features"):
        reconstruct(dark, None, tmp_path, SfmSettings())


def test_still_camera_has_no_motion():
    from dwm_data.ego.sfm import camera_motion

    still = np.repeat(_texture(1), 5, axis=0)
    assert camera_motion(still, None) == 0.0
    panned = np.stack([np.roll(still[0], 4 * i, axis=1) for i in range(5)])
    assert camera_motion(panned, None) == pytest.approx(16 / 240, abs=0.005)
    with pytest.raises(UnitError, match="0 corners to follow"):  # black is not a still camera
        camera_motion(np.zeros_like(still), None)


def test_splat_learns_the_frames_before_the_first_hand():
    from dwm_data.ego.static import training_frames

    hands = np.array([0] * 10 + [1] * 39, bool)
    frames, why = training_frames(hands, 8)
    assert frames == list(range(10)) and why.startswith("before the interaction: the 10 frames")
    frames, why = training_frames(hands, 12)  # too few before the hand: all, the hand masked
    assert frames == list(range(49)) and "10 frames before the first hand" in why
    assert training_frames(np.zeros(9, bool), 8)[0] == list(range(9))  # no hand at all


def test_a_moved_object_leaves_the_loss():
    """Views of the generated room rendered from its true splat, one object painted into two of
    them (it was moved there): those pixels leave the masks, the rest of the room stays."""
    import torch

    from dwm_data.ego.options import EgoSection
    from dwm_data.ego.static import transient_masks
    from dwm_data.fixtures.aria import room_scene
    from dwm_data.fixtures.ego import head_path, intrinsics
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import Views, render_views

    scene = room_scene(0.1, np.random.default_rng(0))
    poses = np.stack([head_path(t) for t in (0.0, 0.3, 0.6, 0.9)])
    viewmats = torch.from_numpy(np.linalg.inv(poses)).float()
    Ks = torch.from_numpy(np.stack([gsplat_K(intrinsics(64, 48))] * 4)).float()
    images = render_views(scene, viewmats, Ks, 64, 48)
    moved = torch.zeros(4, 48, 64, dtype=torch.bool)
    moved[2:, 20:34, 30:44] = True
    images[moved] = torch.tensor([0.9, 0.1, 0.8])
    actor = torch.ones(4, 48, 64, dtype=torch.bool)
    actor[:, 40:, 50:] = False  # the hand, already out of the loss
    kept = transient_masks(scene, Views(images, viewmats, Ks, actor), EgoSection())
    assert not kept[moved].any()
    assert not kept[~actor].any()
    assert kept[~moved & actor].float().mean() > 0.97


def test_the_arm_is_masked_between_where_the_hand_points_from_and_the_body():
    """A right hand gripping with a bent wrist: its fingers point left, so the keypoints say
    the forearm runs right, while the sleeve comes from the lower right. Both are masked, and
    nothing above the hand; fingers pointing down (the wrist above them) give no forearm
    direction, so the body's is used alone."""
    from dwm_data.ego.masks import actor_masks
    from dwm_data.hands.track import HandTrack

    track = HandTrack.empty(2)
    track.valid[:, 1] = True
    fingers = np.array([[-1.0, 0.0], [0.0, 1.0]])  # frame 0 points left, frame 1 down
    for frame, pointing in enumerate(fingers):
        across = np.array([-pointing[1], pointing[0]])
        bones = [np.array([200.0, 120.0])]  # the wrist, then four fingers of four joints
        for finger in range(-2, 3):
            base = bones[0] + across * finger * 6
            bones += [base + pointing * (10 + 8 * joint) for joint in range(4)]
        track.keypoints_px[frame, 1] = np.array(bones[:21])
    masks = actor_masks(track, 320, 240, 0.3)
    grip, down = masks
    assert grip[145, 300] and grip[200, 260]  # the keypoint direction and the sleeve's
    assert not grip[40, 200] and not grip[120, 40]  # above the hand, and past the fingers
    assert down[220, 250] and not down[40, 200]  # the body's side, not above the wrist


@pytest.mark.slow
def test_sfm_recovers_the_true_path_and_refuses_a_partial_one(walk, tmp_path):
    """9 frames at 8 fps (every 2nd), the hand masked out of the features: all registered,
    centres within 2% of the path length and rotations within a degree after alignment."""
    from dwm_data.ego.masks import actor_masks
    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.fixtures.ego import intrinsics
    from dwm_data.hands.track import HandTrack

    picks = list(range(7, 25, 2))
    frames = decode(walk)[picks]
    with np.load(walk.with_suffix(".poses.npz")) as data:
        truth = data["cam_to_world"][picks]
    track = HandTrack.from_npz(walk.with_suffix(".hands.npz").read_bytes()).select(picks)
    keep = ~actor_masks(track, 240, 180, 0.3)
    assert (~keep).any(axis=(1, 2)).sum() == 9  # the hand is in every frame
    cams = reconstruct(frames, keep, tmp_path / "sfm", SfmSettings())
    assert cams.report["registered_frames"] == 9 and cams.report["reprojection_error_px"] < 1.0
    error = path_error(cams.cam_to_world, truth)
    assert error.relative < 0.02, error.as_dict()
    assert error.max_rotation_deg < 1.0, error.as_dict()
    assert cams.intrinsics.fx == pytest.approx(intrinsics().fx, rel=0.03)
    # the same frames followed by frames of no scene at all: refused, never a silent sample
    noise = np.random.default_rng(0).integers(0, 255, (3, 180, 240, 3), dtype=np.uint8)
    with pytest.raises(UnitError, match="partial reconstruction: 9 of 12"):
        reconstruct(np.concatenate([frames, noise]), None, tmp_path / "partial", SfmSettings())


@pytest.mark.slow
def test_a_stalled_reconstruction_is_started_again_narrower(tmp_path):
    """The official clip 00017, its actor masked as build-ego masks it: mapping from COLMAP's
    16-degree start registers 3 of 49 frames and stops; from the next start of the ladder it
    registers all 49 (json says which start)."""
    from dwm_data.cameras import Intrinsics
    from dwm_data.ego.masks import actor_masks
    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.hands.backend import clean_and_follow, landmark_track
    from dwm_data.hands.landmarks import MediaPipeHands
    from dwm_data.video import read_frames

    clip = shared_path("dwm_realworld/realworld_dynamic/videos/00017.mp4")
    frames = read_frames(clip, list(range(49)), 480, 320)
    assumed = Intrinsics.from_fov(480, 320, 70.0)
    track, _ = clean_and_follow(frames, landmark_track(frames, MediaPipeHands(), assumed), assumed)
    keep = ~actor_masks(track, 480, 320, 0.3)
    with pytest.raises(UnitError, match="partial reconstruction: 3 of 49"):
        reconstruct(frames, keep, tmp_path / "once", SfmSettings(init_retry_angles_deg=()))
    cams = reconstruct(frames, keep, tmp_path / "ladder", SfmSettings())
    assert cams.report["registered_frames"] == 49 and cams.report["init_min_angle_deg"] == 12.0


_BUILD = """
from pathlib import Path
from dwm_data.build import build
from dwm_data.recipe import load_recipe
build("build-ego", {options!r}, load_recipe("tiny", {overrides!r}), Path({out!r}), progress=False)
"""


def _cached(out: Path) -> list[Path]:
    """The units' cached reconstructions (in their scratch folders, named by a hash of the id)."""
    return list((out / "scratch").glob("*/cameras.npz"))


def _killed_after_sfm(out: Path, options: dict, overrides: list[str]) -> None:
    """Run the build in a process of its own and SIGKILL its whole group once the unit's
    reconstruction is cached (the splat is being fitted then)."""
    code = _BUILD.format(options=options, overrides=overrides, out=str(out))
    driver = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None and not _cached(out):
        time.sleep(0.05)
    assert driver.poll() is None, "the build ended before its reconstruction was cached"
    assert _cached(out), "no reconstruction cached within 5 minutes"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()


@pytest.mark.slow
def test_build_ego_end_to_end_killed_after_sfm(walk, tmp_path):
    """The walk to one triplet: the clip where the hand acts, recovered cameras, a splat static
    video without the hand, the hand video where the hand is, the splat kept as .ply. The first
    run is killed once structure from motion is done; the re-run takes the cameras from the
    unit's cache: pycolmap's own log says it extracted features once."""
    from dwm_data.store import read_decoded

    out = tmp_path / "run"
    options = {"source": str(walk.parent), "hands_files": True, "splats": str(tmp_path / "splats")}
    _killed_after_sfm(out, options, FAST_SPLAT)
    result = run(walk.parent, out, FAST_SPLAT, hands_files=True, splats=str(tmp_path / "splats"))
    assert result.ok, failures(out)
    log = "".join(path.read_text() for path in (out / "logs").glob("*.log"))
    assert log.count("=== Feature extraction ===") == 1  # printed by pycolmap's process
    assert log.count("structure from motion (pycolmap)") == 1
    assert log.count("cameras from the unit's cache") == 1
    assert not _cached(out)  # the cache goes with the finished unit
    ((sample, frames),) = list(read_decoded(out))
    meta = sample.meta
    assert sample.key == "ego-walk" and sample.prompt.startswith("A right hand")
    assert meta["cameras"]["origin"] == "sfm" and meta["cameras"]["registered_frames"] == 9
    assert meta["source_frames"][0] >= 7  # the window starts where the hand is in view
    assert meta["static"]["method"] == "gaussian-splat" and meta["static"]["ply"] == "ego-walk.ply"
    assert meta["static"]["frames_with_hands"] == 0
    # a hand in every frame: no frames before the interaction, so all of them, the hand masked
    assert meta["static"]["scene_state"].startswith("all frames, the actor masked: 0 frames")
    assert len(meta["static"]["train_frames"]) + len(meta["static"]["heldout_frames"]) == 9
    assert 0 <= meta["static"]["moving_mask_coverage"] < 0.1  # nothing moves in the walk
    assert (tmp_path / "splats" / "ego-walk.ply").is_file()
    with np.load(walk.with_suffix(".poses.npz")) as data:
        truth = data["cam_to_world"][meta["source_frames"]]
    camera = (
        np.frombuffer(sample.camera, np.float32)
        if isinstance(sample.camera, bytes)
        else sample.camera
    )
    assert path_error(np.asarray(camera, np.float64).reshape(-1, 4, 4), truth).relative < 0.03
    drawn = frames["hand"].max(axis=-1) > 40
    assert drawn.any(axis=(1, 2)).sum() >= 8
    # where the hand is, the static video shows the scene, not the skin-coloured hand
    skin = np.array([0.85, 0.62, 0.5]) * 255
    video_skin = np.abs(frames["video"][drawn].astype(float) - skin).max(-1) < 40
    static_skin = np.abs(frames["static"][drawn].astype(float) - skin).max(-1) < 40
    assert video_skin.mean() > 0.3 and static_skin.mean() < video_skin.mean() / 3


@pytest.mark.slow
def test_build_ego_with_given_poses(walk, tmp_path):
    """--poses: the true cameras go into the sample as given, and the splat uses them."""
    from dwm_data.store import read_decoded

    out = tmp_path / "run"
    overrides = [*FAST_SPLAT, "ego.max_points=3000"]  # 300 frustum points to start from
    result = run(walk.parent, out, overrides, hands_files=True, poses=str(walk.parent))
    assert result.ok, failures(out)
    ((sample, frames),) = list(read_decoded(out))
    assert sample.meta["cameras"] == {
        "origin": "given",
        "file": "walk.poses.npz",
        "registered_frames": 9,
    }
    with np.load(walk.with_suffix(".poses.npz")) as data:
        truth = data["cam_to_world"][sample.meta["source_frames"]]
    assert np.allclose(np.asarray(sample.camera).reshape(-1, 4, 4), truth, atol=1e-6)
    assert sample.meta["static"]["initial_points"] > 0  # frustum points: no SfM points given


@pytest.mark.slow
def test_build_ego_places_the_hands_it_found_in_the_recovered_camera(walk, tmp_path):
    """Without --hands-files the detector finds the hands once, in an assumed camera, before
    the cameras are known; the sample's hands must sit in the camera it records: placing them
    on their pixels in the json's intrinsics moves them nowhere."""
    from dwm_data.cameras import Intrinsics
    from dwm_data.hands.landmarks import lift_to_camera
    from dwm_data.hands.track import HandTrack
    from dwm_data.store import read_decoded

    out = tmp_path / "run"
    # the camera assumed before the cameras are known is not the walk's (70 degrees wide)
    overrides = [*FAST_SPLAT, "ego.max_points=3000", "ego.hfov_deg=50"]
    result = run(walk.parent, out, overrides, poses=str(walk.parent))
    assert result.ok, failures(out)
    ((sample, frames),) = list(read_decoded(out))
    hands = sample.meta["hands"]
    assert hands["landmarks"].startswith("mediapipe") and hands["frames_with_hands"] > 0
    intr = sample.meta["intrinsics"]
    size = sample.meta["width"], sample.meta["height"]
    camera = Intrinsics(intr["fx"], intr["fy"], intr["cx"], intr["cy"], *size)
    assumed = Intrinsics.from_fov(*size, 50.0)  # where the detector placed them first
    track = HandTrack.from_npz(sample.hands)
    for frame, side in zip(*np.nonzero(track.valid), strict=True):
        placed, pixels = track.keypoints_cam[frame, side], track.keypoints_px[frame, side]
        shape = placed - placed.mean(axis=0)
        np.testing.assert_allclose(lift_to_camera(shape, pixels, camera), placed, atol=1e-4)
        assert np.abs(lift_to_camera(shape, pixels, assumed) - placed).max() > 1e-3


@pytest.mark.slow
def test_still_camera_gets_the_first_frame_as_its_static_video(tmp_path):
    """A camera on a table: no reconstruction is tried; one frame from before the hand enters,
    repeated, is the static video, and json says so."""
    from dwm_data.fixtures.ego import write_ego_video
    from dwm_data.store import read_decoded

    video = write_ego_video(tmp_path / "videos", 1.6, stem="table", still=True)
    out = tmp_path / "run"
    result = run(video.parent, out, hands_files=True)
    assert result.ok, failures(out)
    ((sample, frames),) = list(read_decoded(out))
    # the hand enters at 0.4 s: the static video is the last frame before it, nobody in view
    static = sample.meta["static"]
    assert static["method"] == "one frame (no camera motion)" and static["actor_free"]
    assert static["source_frame"] < sample.meta["source_frames"][0]
    assert sample.meta["cameras"]["origin"].startswith("none: no camera motion")
    assert sample.meta["cameras"]["registered_frames"] == 0
    drift = np.abs(frames["static"].astype(int) - frames["static"][:1].astype(int))
    assert drift.mean(axis=(1, 2, 3)).max() < 5  # one frame nine times (H.264 P-frames drift)
    first = frames["video"][0].astype(int)
    hand = frames["hand"][0].max(axis=-1) > 40  # where the hand is drawn, the static differs
    difference = np.abs(frames["static"][0].astype(int) - first).max(axis=-1)
    assert hand.any() and difference[~hand].mean() < 4 and difference[hand].mean() > 20
    assert np.allclose(np.asarray(sample.camera).reshape(-1, 4, 4), np.eye(4))
