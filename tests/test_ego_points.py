"""build-ego's point-cloud static video (`--depth`, EgoSim's static condition): the user's depth
file read or refused in one line, the z-buffer, points lifted from one frame of the generated
walk drawn in another camera against the frame itself (and against OpenCV's `remap` warp of the
same frame), a known scale (depth) and scale and shift (disparity) recovered by the alignment,
recorded failures for bad depth files, and one build with `--poses` and `--depth`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_SPLAT

from dwm_data.bench.ego import masked_psnr
from dwm_data.errors import UnitError
from dwm_data.recipe import load_recipe

# with --poses the splat starts from frustum points: few of them
SPLAT = [*FAST_SPLAT, "ego.max_points=3000"]


def clip(walk: Path) -> dict:
    """Every frame of the walk with its true cameras and depth, and the actor masks the
    builder would make from its hand keypoints (working frames = the source's 240x180)."""
    from dwm_data.ego.masks import actor_masks
    from dwm_data.hands.track import HandTrack
    from dwm_data.video import decode

    track = HandTrack.from_npz(walk.with_suffix(".hands.npz").read_bytes())
    with (
        np.load(walk.with_suffix(".poses.npz")) as poses,
        np.load(walk.parent / "walk.depth.npz") as d,
    ):
        return {
            "frames": decode(walk),
            "poses": poses["cam_to_world"],
            "depth": d["depth"].astype(np.float64),
            "keep": ~actor_masks(track, 240, 180, 0.3),
        }


def test_depth_files_are_read_resized_or_refused_in_one_line(tmp_path):
    from dwm_data.ego.points import read_depth

    maps = np.arange(3 * 6 * 8, dtype=np.float32).reshape(3, 6, 8) + 1
    maps[1, 0, 0] = np.nan
    np.savez(tmp_path / "a.depth.npz", disparity=maps, frames=np.array([10, 12, 14]))
    kind, out = read_depth(tmp_path / "a.depth.npz", [14, 12], 4, 3)  # half size: nearest
    assert kind == "disparity" and out.shape == (2, 3, 4)
    assert np.array_equal(out[0], maps[2, ::2, ::2]) and np.isnan(out[1, 0, 0])
    bad = {
        "missing": None,
        "key": {"depths": maps},
        "both": {"depth": maps, "disparity": maps},
        "shape": {"depth": maps[0]},
        "text": {"depth": maps.astype(str)},
        "frames": {"depth": maps, "frames": np.array([1, 2])},
        "frame": {"depth": maps},
        "aspect": {"depth": maps[:, :, :6]},
    }
    for stem, arrays in bad.items():
        if arrays is not None:
            np.savez(tmp_path / f"{stem}.depth.npz", **arrays)
    np.save(tmp_path / "single.npy", maps)
    (tmp_path / "single.npy").rename(tmp_path / "single.depth.npz")
    expected = {
        "missing": "--depth: no missing.depth.npz in",
        "key": "needs one array 'depth' or 'disparity', has depths",
        "both": "needs one array 'depth' or 'disparity', has depth, disparity",
        "shape": r"'depth' must be real numbers \(N, H, W\), got float32 \(6, 8\)",
        "text": "'depth' must be real numbers",
        "frames": r"'frames' must be \(N,\) integers for its 3 maps",
        "frame": r"has no map for source frame 3 \(3 maps, frames 0..2\)",
        "aspect": "maps are 6x6, the video's aspect is 4x3",
        "single": "is not an .npz archive",
    }
    for stem, message in expected.items():
        with pytest.raises(UnitError, match=message) as caught:
            read_depth(tmp_path / f"{stem}.depth.npz", [0, 3] if stem == "frame" else [0], 4, 3)
        assert caught.value.stage == "depth"


def test_the_nearest_point_wins_each_pixel_and_points_are_squares():
    from dwm_data.cameras import Intrinsics
    from dwm_data.ego.points import PointCloud, render_points

    intr = Intrinsics(10.0, 10.0, 9.5, 9.5, 20, 20)  # 20x20, centred
    # two points on the axis (the far one red, the near one green), one blue off to the side
    xyz = np.array([[0.0, 0.0, 4.0], [0.0, 0.0, 2.0], [0.8, 0.0, 2.0]])
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    cloud = PointCloud(xyz, colors, np.full(3, 0.6))  # 0.6 m squares: 3 px at 2 m, 2 px at 4 m
    (image,) = render_points(cloud, intr, np.eye(4)[None], 0)
    assert (image[8:11, 8:11] == [0, 255, 0]).all()  # the near point, 3x3 around (9.5, 9.5)
    assert (image[8:11, 12:15] == [0, 0, 255]).all()  # the side point at u = 13.5
    assert image.any(axis=-1).sum() == 18 and not (image == [255, 0, 0]).all(-1).any()
    turned = np.diag([-1.0, 1, -1, 1])[None]  # a camera turned around sees nothing: black
    assert not render_points(cloud, intr, turned, 0).any()
    (fixed,) = render_points(cloud, intr, np.eye(4)[None], 2)  # 5x5 squares whatever the depth
    assert fixed.any(axis=-1).sum() == 5 * 5 + 5 * 4  # two squares overlapping by one column
    assert not (fixed == [255, 0, 0]).all(-1).any()


@pytest.mark.slow
def test_points_of_one_frame_drawn_in_another_camera_reproduce_it(walk):
    """Frame j's pixels lifted with its true depth and drawn by camera i give frame i where they
    land: within 2 dB of OpenCV's backward warp (`remap`, bilinear) of frame j by frame i's true
    depth, and far above frame j itself."""
    import cv2

    from dwm_data.cameras import project
    from dwm_data.ego.points import lift, render_points
    from dwm_data.fixtures.ego import intrinsics

    data, intr = clip(walk), intrinsics()
    frames, poses, depth = data["frames"], data["poses"], data["depth"]
    keep = np.ones(frames.shape[:3], bool)  # no hand before 0.4 s
    for j, i in [(0, 3), (0, 6), (2, 5)]:
        cloud = lift(depth[[j]], frames[[j]], keep[[j]], intr, poses[[j]], 1)
        (drawn,) = render_points(cloud, intr, poses[[i]], 0)
        landed = drawn.any(axis=-1)
        v, u = np.mgrid[0:180, 0:240].astype(float)
        z = depth[i]
        cam = np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], -1)
        world = cam @ poses[i][:3, :3].T + poses[i][:3, 3]
        uv = project((world - poses[j][:3, 3]) @ poses[j][:3, :3], intr).astype(np.float32)
        warped = cv2.remap(frames[j], uv[..., 0], uv[..., 1], cv2.INTER_LINEAR)
        ours, reference = (
            masked_psnr(drawn, frames[i], landed),
            masked_psnr(warped, frames[i], landed),
        )
        assert landed.mean() > 0.75, (j, i, landed.mean())
        assert ours > 25 and ours > reference - 2, (j, i, ours, reference)
        assert ours > masked_psnr(frames[j], frames[i], landed) + 10


def _scene_points(rng: np.random.Generator) -> np.ndarray:
    """What structure from motion would give: points on the room's surfaces (the fixture's own
    surfels) and 5% strays in the air (bad triangulations)."""
    from dwm_data.fixtures.aria import ROOM, room_scene

    surface = room_scene(0.1, rng)["means"].numpy().astype(np.float64)
    strays = rng.uniform(ROOM[0], ROOM[1], (len(surface) // 20, 3))
    return np.concatenate([surface, strays])


def _video(walk: Path, folder: Path, stem: str, **arrays) -> None:
    """`stem` as a copy of the walk (video, prompt, hands, poses) with its own depth file."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".mp4", ".txt", ".hands.npz", ".poses.npz"):
        shutil.copy(walk.with_suffix(suffix), folder / f"{stem}{suffix}")
    if arrays:
        np.savez_compressed(folder / f"{stem}.depth.npz", **arrays)


@pytest.mark.slow
def test_alignment_recovers_a_scale_and_a_disparity_scale_and_shift(walk, tmp_path):
    """The true depth times 0.37 (a depth model in another unit), and as disparity 0.8 / depth
    + 0.05 at another size with 5% of its pixels garbage (Depth Anything's kind of output),
    against scene points with 5% strays: the alignment finds 1 / 0.37, and 1 / 0.8 and
    -0.05 / 0.8, within 2%; the point video of the scaled depth reproduces the frames where
    points land (the garbage of the other is drawn as it is: points in mid-air)."""
    import cv2

    from dwm_data.cameras import Intrinsics
    from dwm_data.ego.options import EgoSection
    from dwm_data.ego.points import points_video
    from dwm_data.ego.sfm import Cameras
    from dwm_data.fixtures.ego import intrinsics

    rng = np.random.default_rng(0)
    data = clip(walk)
    window = list(range(7, 25, 2))  # 9 frames at 8 fps, a hand from the first
    frames, keep = data["frames"][window], data["keep"][window]
    points = _scene_points(rng)
    cameras = Cameras(intrinsics(), data["poses"][window], points, np.zeros_like(points), {})
    content = Intrinsics.from_fov(120, 90, 70.0)
    depth = data["depth"]
    bigger = np.stack([cv2.resize(d, (320, 240), interpolation=cv2.INTER_NEAREST) for d in depth])
    disparity = 0.8 / bigger + 0.05
    disparity[rng.random(bigger.shape) < 0.05] = rng.uniform(0, 5)
    inputs = {
        "scaled": {"depth": depth * 0.37},
        "disparity": {"disparity": disparity.astype(np.float32)},
    }
    for stem, arrays in inputs.items():
        np.savez_compressed(tmp_path / f"{stem}.depth.npz", **arrays)
        video, report = points_video(
            tmp_path, stem, window, frames, keep, cameras, content, EgoSection()
        )
        fit = report["alignment"]
        assert fit["frames_aligned"] == fit["frames"] == 8, report
        assert report["scene_state"].startswith("all frames, the actor masked")
        assert fit["median_relative_residual"] < 0.02 and report["points"] > 8 * 2000
        if stem == "scaled":
            assert fit["scale"] == pytest.approx(1 / 0.37, rel=0.02)
        else:
            assert fit["scale"] == pytest.approx(1 / 0.8, rel=0.02)
            assert fit["shift"] == pytest.approx(-0.05 / 0.8, rel=0.02)
        assert video.shape == (9, 90, 120, 3)
        if stem != "scaled":
            continue
        small = np.stack([cv2.resize(f, (120, 90), interpolation=cv2.INTER_AREA) for f in frames])
        outside = np.stack([cv2.resize(k.astype(np.uint8), (120, 90)) > 0 for k in keep])
        landed = video.any(axis=-1) & outside
        assert landed.mean() > 0.5 and masked_psnr(video, small, landed) > 20, masked_psnr(
            video, small, landed
        )


@pytest.mark.slow
def test_depth_that_does_not_fit_fails_the_unit_with_its_reason(walk, tmp_path):
    """Depth saved as disparity, another video's depth, disparity with cameras that bring no
    points, and missing or torn files: each a recorded failure at stage 'depth', the run goes on."""
    from dwm_data.build import build

    videos = tmp_path / "videos"
    with np.load(walk.parent / "walk.depth.npz") as data:
        depth = data["depth"]
    _video(walk, videos, "missing")
    _video(walk, videos, "short", depth=depth[:5])
    _video(walk, videos, "torn", depth=depth[:, :, :100])
    _video(walk, videos, "unscaled", disparity=1 / depth)
    out = tmp_path / "run"
    options = {"source": str(videos), "hands_files": True, "poses": str(videos)}
    result = build(
        "build-ego",
        {**options, "depth": str(videos)},
        load_recipe("tiny", SPLAT),
        out,
        progress=False,
    )
    assert not result.ok
    rows = [json.loads(line) for f in (out / "failures").glob("*.jsonl") for line in f.open()]
    failed = {row["unit"]: row for row in rows}
    assert set(failed) == {"missing", "short", "torn", "unscaled"}
    assert {row["stage"] for row in rows} == {"depth"}
    assert "no missing.depth.npz in" in failed["missing"]["message"]
    assert "has no map for source frame" in failed["short"]["message"]
    assert "maps are 100x180, the video's aspect is 240x180" in failed["torn"]["message"]
    assert "without scene points to fit it to" in failed["unscaled"]["message"]


@pytest.mark.slow
def test_a_disparity_saved_as_depth_is_refused(walk, tmp_path):
    """Against the reconstruction's points, inverse depth under 'depth' fits no map."""
    from dwm_data.ego.options import EgoSection
    from dwm_data.ego.points import points_video
    from dwm_data.ego.sfm import Cameras
    from dwm_data.fixtures.ego import intrinsics

    data, window = clip(walk), list(range(0, 18, 2))
    points = _scene_points(np.random.default_rng(0))
    cameras = Cameras(intrinsics(), data["poses"][window], points, np.zeros_like(points), {})
    np.savez(tmp_path / "walk.depth.npz", depth=1 / data["depth"])
    with pytest.raises(
        UnitError,
        match="its depth falls where the SfM points' depth grows, in all 8 maps that see them: disparity saved as depth",
    ):
        points_video(
            tmp_path,
            "walk",
            window,
            data["frames"][window],
            data["keep"][window],
            cameras,
            intrinsics(64, 48),
            EgoSection(),
        )


@pytest.mark.slow
def test_build_ego_with_poses_and_depth_writes_a_points_video(walk, tmp_path):
    """--poses and --depth on the walk: points.mp4 beside the triplet, its frames, size and fps,
    showing the scene where the video does (outside the hand), and json saying how."""
    import cv2

    from dwm_data.build import build
    from dwm_data.inspect import inspect_shards
    from dwm_data.store import read_decoded

    out = tmp_path / "run"
    folder = str(walk.parent)
    options = {"source": folder, "hands_files": True, "poses": folder, "depth": folder}
    result = build("build-ego", options, load_recipe("tiny", SPLAT), out, progress=False)
    assert result.ok
    ((sample, frames),) = list(read_decoded(out))
    assert sample.points is not None and frames["points"].shape == frames["video"].shape
    assert sample.meta["codecs"]["points"] == sample.meta["codecs"]["static"]
    points = sample.meta["static"]["points"]
    assert points["file"] == "walk.depth.npz" and points["kind"] == "depth"
    assert points["alignment"]["method"].startswith("none: depth taken as metric")
    assert points["points"] > 1000 and points["coverage"] > 0.5
    assert inspect_shards(out)["optional members"]["points.mp4"] == 1
    # outside the hand (drawn in the hand video, grown a little), where points land
    hand = np.stack(
        [
            cv2.dilate((f.max(axis=-1) > 20).astype(np.uint8), np.ones((9, 9)))
            for f in frames["hand"]
        ]
    )
    landed = (frames["points"].max(axis=-1) > 10) & (hand == 0)
    assert landed.mean() > 0.4
    assert masked_psnr(frames["points"], frames["video"], landed) > 18
    assert (
        masked_psnr(frames["points"], frames["video"], landed)
        > masked_psnr(np.roll(frames["points"], 8, axis=2), frames["video"], landed) + 3
    )  # lined up: shifted by 8 of 64 pixels it is clearly worse


def test_a_points_video_is_a_member_checked_like_the_static_one(tmp_path):
    """points.mp4 goes into the tar beside the triplet (encoded as static is), comes back from
    it, is decoded by read_decoded and listed by inspect; one that does not line up with the
    video is refused naming it."""
    from dwm_data.errors import SampleError
    from dwm_data.inspect import inspect_shards
    from dwm_data.sample import Sample, make_sample
    from dwm_data.store import ShardWriter, read_decoded
    from dwm_data.video import Codec, encode

    codecs = {
        "video": Codec(preset="ultrafast"),
        "static": Codec(crf=23, preset="superfast"),
        "hand": Codec(preset="ultrafast", pix_fmt="yuv444p"),
    }
    still = np.full((9, 48, 64, 3), 90, np.uint8)
    triplet = {"video": still, "static": still, "hand": still}
    meta = {"source": {"name": "test", "license": "CC0-1.0"}}
    sample = make_sample("k-1", triplet | {"points": still}, 8, codecs, "p", meta)
    assert sample.meta["codecs"]["points"] == sample.meta["codecs"]["static"]
    assert sample.meta["codecs"]["points"]["crf"] == 23
    members = sample.to_wds()
    assert "points.mp4" in members
    again = Sample.from_wds(members)
    assert again.points == sample.points and again.validate().frames == 9
    assert (
        Sample.from_wds(make_sample("k-2", triplet, 8, codecs, "p", meta).to_wds()).points is None
    )
    writer = ShardWriter(tmp_path / "shards", tmp_path / "manifests", "t", 0, 10, 10**9)
    writer.add_unit("u", [again])
    writer.close()
    ((_, frames),) = list(read_decoded(tmp_path / "shards"))
    assert set(frames) == {"video", "static", "hand", "points"}
    assert inspect_shards(tmp_path / "shards")["optional members"] == {"points.mp4": 1}
    short = encode(still[:7], 8, codecs["static"])
    with pytest.raises(SampleError, match="k-3: points.mp4 has frames 7, video.mp4 has 9"):
        make_sample("k-3", triplet, 8, codecs, "p", meta, encoded={"points": short})


@pytest.mark.slow
def test_depth_fitted_to_a_real_reconstruction_takes_its_scale(walk, tmp_path):
    """COLMAP's reconstruction of 9 frames has a scale of its own; the true depth fitted to its
    points takes it: the fitted scale is the reconstruction's units per metre that the
    similarity of its cameras to the true ones gives (within 3%), and the points line up with
    the frames."""
    import cv2

    from dwm_data.ego.options import EgoSection, SfmSettings
    from dwm_data.ego.points import points_video
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.ego.trajectory import path_error

    data, window = clip(walk), list(range(7, 25, 2))
    frames, keep = data["frames"][window], data["keep"][window]
    cameras = reconstruct(frames, keep, tmp_path / "sfm", SfmSettings())
    units_per_metre = 1 / path_error(cameras.cam_to_world, data["poses"][window]).scale
    video, report = points_video(
        walk.parent, "walk", window, frames, keep, cameras, cameras.intrinsics, EgoSection()
    )
    fit = report["alignment"]
    assert fit["frames_aligned"] == fit["frames"] == 8 and fit["median_sfm_points"] >= 50
    assert fit["scale"] == pytest.approx(units_per_metre, rel=0.03), (fit, units_per_metre)
    assert fit["median_relative_residual"] < 0.05
    hand = np.stack([cv2.dilate((~k).astype(np.uint8), np.ones((9, 9))) for k in keep])
    landed = video.any(axis=-1) & (hand == 0)
    assert landed.mean() > 0.6 and masked_psnr(video, frames, landed) > 20
