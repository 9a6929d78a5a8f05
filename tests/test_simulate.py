"""`dwm-data simulate`: camera paths, scenes (splat, mesh), hand motions and the result folder.

The references are outside the code under test where there is one: the brute-force splat
compositor, `project` of known geometry for meshes, the builders' `render_hands` call on the
same track, nerfstudio's camera_path layout and the demo's own camera path.
"""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_model import tiny_base, trained_like  # noqa: F401

from dwm_data.cameras import Intrinsics, project, world_to_camera
from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.fixtures.aria import room_scene, upright_path
from dwm_data.hands.track import HandTrack
from dwm_data.recipe import load_recipe
from dwm_data.simulate.paths import load_path, look_at, write_nerfstudio
from dwm_data.splat.ply import load_ply, save_ply

RECIPE = load_recipe("tiny")
VIDEO = RECIPE.video
FRAMES, WIDTH, HEIGHT, FPS = VIDEO.frames, VIDEO.width, VIDEO.height, VIDEO.rate
ROOT = Path(__file__).resolve().parents[1]


def demo_poses(frames: int = FRAMES, fps: Fraction = FPS) -> np.ndarray:
    """The demo capture's interaction cameras (the room's walkthrough after exploring)."""
    return np.stack([upright_path(3.0 + i / float(fps), 3.0) for i in range(frames)])


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """The demo's splat (the generated room of the aria-capture stage) as a .ply, and a
    camera.npy of its interaction path."""
    folder = tmp_path_factory.mktemp("room")
    params = room_scene(0.12, np.random.default_rng(0))
    save_ply(params, folder / "room.ply")
    np.save(folder / "camera.npy", demo_poses().astype(np.float32))
    return folder


# --- camera paths -------------------------------------------------------------------------


def test_paths_from_every_format_give_the_same_poses(tmp_path):
    poses = demo_poses()
    k = Intrinsics.from_fov(WIDTH, HEIGHT, 100)
    np.save(tmp_path / "camera.npy", poses)
    write_nerfstudio(poses, k, FPS, tmp_path / "camera_path.json")
    times = [i / float(FPS) for i in range(FRAMES)]
    matrices = [
        {"time": t, "camera_to_world": p.tolist()} for t, p in zip(times, poses, strict=True)
    ]
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"fov": 100, "keyframes": matrices}))
    eyes = poses[:, :3, 3]
    aimed = [
        {"time": t, "position": e.tolist(), "look_at": (e + p[:3, 2]).tolist()}
        for t, e, p in zip(times, eyes, poses, strict=True)
    ]
    (tmp_path / "keys.json").write_text(json.dumps({"fov": 100, "keyframes": aimed}))
    loaded = {
        name: load_path(
            tmp_path / name, FRAMES, FPS, WIDTH, HEIGHT, fov=None if name != "camera.npy" else 100
        )
        for name in ("camera.npy", "camera_path.json", "keys.yaml", "keys.json")
    }
    for name, path in loaded.items():
        assert np.allclose(path.poses, poses, atol=1e-6), name
        assert np.allclose(path.intrinsics.matrix, k.matrix, atol=1e-6), name
    # nerfstudio's file: OpenGL camera axes, row-major, a vertical fov
    data = json.loads((tmp_path / "camera_path.json").read_text())
    first = np.array(data["camera_path"][0]["camera_to_world"]).reshape(4, 4)
    assert np.allclose(first[:3, 2], -poses[0, :3, 2]) and np.allclose(
        first[:3, 1], -poses[0, :3, 1]
    )
    vertical = 2 * math.degrees(math.atan(HEIGHT / 2 / k.fy))
    assert data["camera_path"][0]["fov"] == pytest.approx(vertical)


def test_coarse_keyframes_are_interpolated_smoothly_through_their_poses(tmp_path):
    fine = demo_poses(33, Fraction(32))  # the same second of the walk, 4x denser
    keys = [{"time": i / 8, "camera_to_world": fine[4 * i].tolist()} for i in range(0, 9, 2)]
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"keyframes": keys}))
    path = load_path(tmp_path / "keys.yaml", 33, Fraction(32), WIDTH, HEIGHT)
    assert np.allclose(path.poses[::8], fine[::8], atol=1e-9)  # exact at the keyframes
    rotation = path.poses[:, :3, :3]
    assert np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert np.abs(path.poses[:, :3, 3] - fine[:, :3, 3]).max() < 0.01  # metres off the true walk
    assert path.intrinsics.fx == pytest.approx(WIDTH / 2)  # the official 90 degrees by default


def test_untimed_keyframes_span_the_clip_and_look_at_points_up(tmp_path):
    keys = [
        {"position": [0, 0, 1.5], "look_at": [1, 0, 1.5]},
        {"position": [0.5, 0, 1.5], "look_at": [1.5, 0.2, 1.4]},
    ]
    (tmp_path / "k.yaml").write_text(yaml.safe_dump({"fov": 60, "keyframes": keys}))
    path = load_path(tmp_path / "k.yaml", FRAMES, FPS, WIDTH, HEIGHT)
    assert np.allclose(path.poses[0, :3, 3], [0, 0, 1.5]) and np.allclose(
        path.poses[-1, :3, 3], [0.5, 0, 1.5]
    )
    # looking along +x with z up: image right is -y, image down is -z
    assert np.allclose(path.poses[0, :3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    assert np.allclose(look_at(np.zeros(3), np.array([1.0, 0, 0]))[:3, :3], path.poses[0, :3, :3])


@pytest.mark.parametrize(
    "damage, message",
    [
        ("nan", "pose 3 is not finite"),
        ("scaled", "pose 5 is not rigid"),
        ("short", "the path lasts"),
    ],
)
def test_bad_paths_are_one_line(tmp_path, damage, message):
    poses = demo_poses()
    if damage == "nan":
        poses[3, 0, 3] = np.nan
    elif damage == "scaled":
        poses[5, :3, :3] *= 1.2
    else:
        poses = poses[:5]
    np.save(tmp_path / "camera.npy", poses)
    with pytest.raises(DwmDataError, match=message) as info:
        load_path(tmp_path / "camera.npy", FRAMES, FPS, WIDTH, HEIGHT)
    assert "\n" not in str(info.value)


# --- scenes ----------------------------------------------------------------------------------


def _reference_frame(params, pose: np.ndarray, k: Intrinsics) -> np.ndarray:
    """The brute-force compositor (one Gaussian at a time, float64) on gsplat's projection."""
    import torch
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    from dwm_data.splat.compositor import reference_composite
    from dwm_data.splat.model import SH_C0
    from dwm_data.splat.render import gsplat_K

    viewmat = torch.from_numpy(np.linalg.inv(pose)).float()[None]
    K = torch.from_numpy(gsplat_K(k)).float()[None]
    covars, _ = _quat_scale_to_covar_preci(
        params["quats"], torch.exp(params["scales"]), compute_preci=False
    )
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        params["means"], covars, viewmat, K, k.width, k.height
    )
    colors = (params["sh0"][:, 0] * SH_C0 + 0.5).clamp_min(0)[None]
    image, _ = reference_composite(
        means2d,
        conics,
        torch.sigmoid(params["opacities"]),
        colors,
        depths,
        radii,
        k.width,
        k.height,
    )
    return (image[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _static(scene: Path, path: Path, **spec) -> np.ndarray:
    from dwm_model.simulate import SceneSpec, Simulator

    return Simulator(SceneSpec(scene, path, **spec), RECIPE).static


def test_static_video_from_a_splat_matches_the_splat_renderers_images(room):
    static = _static(room / "room.ply", room / "camera.npy")
    assert static.shape == (FRAMES, HEIGHT, WIDTH, 3) and static.std() > 10
    params = load_ply(room / "room.ply")
    k = Intrinsics.from_fov(WIDTH, HEIGHT, 90)
    for index in (0, FRAMES - 1):
        reference = _reference_frame(params, demo_poses()[index], k)
        assert np.abs(static[index].astype(int) - reference).max() <= 2


def _write_foreign_ply(params: dict, path: Path, fmt: str) -> None:
    """The same splat as other writers lay it out: doubles, normals and uchar colours among the
    fields, another field order, big endian or ASCII, and a trailing element."""
    p = {k: v.numpy().astype(np.float64) for k, v in params.items()}
    count = len(p["means"])
    columns = {
        "opacity": p["opacities"],
        **{f"rot_{i}": p["quats"][:, i] for i in range(4)},
        "red": np.full(count, 128), "green": np.full(count, 64), "blue": np.zeros(count),
        **{f"f_dc_{i}": p["sh0"][:, 0, i] for i in range(3)},
        **{f"scale_{i}": p["scales"][:, i] for i in range(3)},
        **{axis: p["means"][:, i] for i, axis in enumerate("xyz")},
        **{f"n{axis}": np.zeros(count) for axis in "xyz"},
    }  # fmt: skip
    kinds = {name: ("uchar" if name in ("red", "green", "blue") else "double") for name in columns}
    header = (
        f"ply\nformat {fmt} 1.0\ncomment written like another exporter\nelement vertex {count}\n"
    )
    header += "".join(f"property {kinds[n]} {n}\n" for n in columns)
    header += "element camera 1\nproperty float fov\nend_header\n"
    if fmt == "ascii":
        rows = np.stack(list(columns.values()), axis=1)
        body = "\n".join(" ".join(repr(float(x)) for x in row) for row in rows) + "\n0.5\n"
        path.write_text(header + body)
        return
    order = ">" if fmt == "binary_big_endian" else "<"
    dtype = [(n, order + ("u1" if kinds[n] == "uchar" else "f8")) for n in columns]
    table = np.zeros(count, dtype)
    for name, values in columns.items():
        table[name] = values
    path.write_bytes(header.encode() + table.tobytes() + np.array([0.5], order + "f4").tobytes())


@pytest.mark.parametrize("fmt", ["binary_big_endian", "ascii"])
def test_splats_of_other_writers_load_as_ours(room, tmp_path, fmt):
    ours = load_ply(room / "room.ply")
    _write_foreign_ply(ours, tmp_path / "other.ply", fmt)
    theirs = load_ply(tmp_path / "other.ply")
    assert set(theirs) == set(ours)
    for name in ours:
        assert np.allclose(theirs[name].numpy(), ours[name].numpy(), atol=1e-6), name


def test_scene_up_axis_and_scale_are_applied(room, tmp_path):
    """The room exported y-up in centimetres renders as the z-up metre room with --up y
    --scale 0.01."""
    import torch
    from scipy.spatial.transform import Rotation

    params = load_ply(room / "room.ply")
    turn = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)  # y-up -> z-up
    back = Rotation.from_matrix(turn.T)
    quats = Rotation.from_quat(params["quats"].numpy()[:, [1, 2, 3, 0]])
    moved = dict(params)
    moved["means"] = torch.from_numpy((params["means"].numpy() @ turn) * 100).float()
    moved["quats"] = torch.from_numpy((back * quats).as_quat()[:, [3, 0, 1, 2]]).float()
    moved["scales"] = params["scales"] + math.log(100)
    save_ply(moved, tmp_path / "yup-cm.ply")
    frames = slice(0, 3)
    expected = _static(room / "room.ply", room / "camera.npy")[frames]
    got = _static(tmp_path / "yup-cm.ply", room / "camera.npy", up="y", scale=0.01)[frames]
    assert np.abs(got.astype(int) - expected).mean() < 0.5


def test_a_ply_that_is_neither_splat_nor_mesh_is_one_line(tmp_path):
    from dwm_data.simulate.scene import load_scene

    points = tmp_path / "points.ply"
    points.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                      "property float z\nend_header\n0 0 0\n1 1 1\n")  # fmt: skip
    with pytest.raises(DwmDataError, match="neither a Gaussian splat .* nor a mesh"):
        load_scene(points)
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(DwmDataError, match="not a PLY file"):
        load_scene(tmp_path / "junk.ply")


def _mesh_room():
    """A box room (faces inward, grey) with a red cube in it, z up, metres."""
    import trimesh

    walls = trimesh.creation.box(extents=(3.0, 3.0, 2.2))
    walls.apply_translation((0, 0, 1.1))
    walls.invert()
    walls.visual.vertex_colors = (180, 180, 170, 255)
    cube = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
    cube.apply_translation((1.0, 0.0, 1.2))
    cube.visual.vertex_colors = (220, 30, 30, 255)
    return trimesh.Scene({"walls": walls, "cube": cube})


@pytest.fixture(scope="module")
def mesh_scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mesh")
    scene = _mesh_room()
    scene.to_mesh().export(folder / "room.ply")  # z up as built, one mesh with colours
    to_y_up = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], np.float64)
    y_up = scene.copy()
    y_up.apply_transform(to_y_up)  # (x, y, z) -> (x, z, -y): glTF's and OBJ's y up
    y_up.export(folder / "room.glb")
    y_up.to_mesh().export(folder / "room.obj")
    keys = [{"position": [-0.5, 0.0, 1.2], "look_at": [1.0, 0.0, 1.2]}] * 2
    (folder / "keys.yaml").write_text(yaml.safe_dump({"fov": 70, "keyframes": keys}))
    return folder


def test_mesh_scenes_render_the_same_room_from_each_format(mesh_scenes):
    frames = {
        name: _static(mesh_scenes / name, mesh_scenes / "keys.yaml")[0]
        for name in ("room.ply", "room.glb", "room.obj")
    }
    k = Intrinsics.from_fov(WIDTH, HEIGHT, 70)
    pose = look_at(np.array([-0.5, 0.0, 1.2]), np.array([1.0, 0.0, 1.2]))
    u, v = np.round(project(world_to_camera(np.array([1.0, 0.0, 1.2]), pose), k)).astype(int)
    for name, image in frames.items():
        red, green, blue = image[v, u].astype(int)
        assert red > 100 and red > 2 * green and red > 2 * blue, (name, image[v, u])
        corner = image[2, 2].astype(int)  # the grey wall around it
        assert abs(corner[0] - corner[1]) < 30 and corner.max() > 30, (name, corner)
        # the cube's edges where `project` puts its front face (0.3 m wide at 1.35 m)
        row = image[v].astype(int)
        red_columns = np.nonzero((row[:, 0] > 100) & (row[:, 0] > 2 * row[:, 1]))[0]
        assert abs(len(red_columns) - 2 * k.fx * 0.15 / 1.35) <= 2, (name, red_columns)
    assert np.abs(frames["room.glb"].astype(int) - frames["room.ply"]).mean() < 3
    assert np.abs(frames["room.obj"].astype(int) - frames["room.ply"]).mean() < 3


# --- hand motions -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator(room):
    from dwm_model.simulate import SceneSpec, Simulator

    return Simulator(SceneSpec(room / "room.ply", room / "camera.npy"), RECIPE)


@pytest.fixture(scope="module")
def mano_track(tmp_path_factory):
    """A right hand sweeping in front of the camera from MANO parameters (as the taste demo's
    clip), the track a mano-fit builder would hold (parameters, vertices, keypoints, pixels)."""
    import torch

    from dwm_data.fixtures.mano import write_mano_models
    from dwm_data.hands.mano import ManoHands

    folder = tmp_path_factory.mktemp("mano")
    write_mano_models(folder)
    hands = ManoHands(folder)
    frames = 2 * FRAMES - 1  # at twice the recipe's fps
    phase = np.linspace(0, 1, frames)
    orient = np.tile([-1.2, 0.6, -0.9], (frames, 1))
    pose = np.outer(0.4 + 0.3 * np.sin(phase * 2 * math.pi), np.tile([0.0, 0.0, 0.3], 15))
    transl = np.stack([0.1 - 0.15 * phase, np.full(frames, 0.05), np.full(frames, 0.4)], 1)
    params = {
        "global_orient": orient,
        "hand_pose": pose,
        "betas": np.zeros((frames, 10)),
        "transl": transl,
    }
    with torch.no_grad():
        out = hands("right", *(torch.tensor(params[k], dtype=torch.float32) for k in params))
    k = Intrinsics.from_fov(WIDTH, HEIGHT, 90)
    track = HandTrack.empty(frames, with_vertices=778)
    track.valid[:, 1] = True
    track.keypoints_cam[:, 1] = out.keypoints.numpy()
    track.keypoints_px[:, 1] = project(out.keypoints.numpy(), k)
    track.vertices[:, 1] = out.vertices.numpy()
    track.mano = {
        name: np.full((frames, 2, v.shape[1]), np.nan, np.float32) for name, v in params.items()
    }
    for name, value in params.items():
        track.mano[name][:, 1] = value
    (folder / "hands.npz").write_bytes(track.to_npz())
    faces = (hands.faces["left"], hands.faces["right"])
    return folder, track, faces, k


def _hands(simulator, hands: Path, **spec) -> np.ndarray:
    from dwm_model.simulate import MotionSpec

    return simulator.conditions(MotionSpec(hands=hands, motion_fps=Fraction(16), **spec))


def test_hand_video_from_hands_npz_matches_the_builders_render(simulator, mano_track):
    from dwm_data.hands.render import render_hands

    folder, track, faces, k = mano_track
    at_recipe_fps = track.select(np.arange(0, track.frames, 2))  # 16 fps -> 8 fps
    builders = render_hands(at_recipe_fps, faces, k, WIDTH, HEIGHT)
    meshes = _hands(simulator, folder / "hands.npz", mano_dir=folder)
    assert meshes.motion.record["source_frames"] == list(range(0, track.frames, 2))
    assert meshes.motion.record["representation"] == "mesh" and builders.any()
    assert np.abs(meshes.hand.astype(int) - builders).max() <= 1
    # without MANO files: skeletons from the keypoints, as the builders draw such tracks
    skeletons = _hands(simulator, folder / "hands.npz").hand
    assert np.array_equal(skeletons, render_hands(at_recipe_fps, None, k, WIDTH, HEIGHT))


def test_world_placement_projects_hands_into_the_path_cameras(simulator, mano_track, tmp_path):
    """Hands tracked along the same cameras land where they were; tracked from still cameras
    they stay put in the world while the path moves."""
    folder, track, _, _ = mano_track
    ego = _hands(simulator, folder / "hands.npz").hand
    poses = np.repeat(demo_poses(), 2, axis=0)[: track.frames]  # the path's camera per hand frame
    np.save(tmp_path / "tracked.npy", poses)
    world = _hands(
        simulator, folder / "hands.npz", placement="world", motion_poses=tmp_path / "tracked.npy"
    )
    assert np.array_equal(world.hand, ego)
    still = np.repeat(demo_poses()[:1], track.frames, axis=0)
    np.save(tmp_path / "still.npy", still)
    fixed = _hands(
        simulator, folder / "hands.npz", placement="world", motion_poses=tmp_path / "still.npy"
    )
    seen = fixed.motion.track.keypoints_cam[:, 1].astype(np.float64)
    c2w = demo_poses()
    in_world = np.einsum("fij,fpj->fpi", c2w[:, :3, :3], seen) + c2w[:, None, :3, 3]
    tracked = (
        np.einsum("ij,fpj->fpi", still[0, :3, :3], track.keypoints_cam[::2, 1]) + still[0, :3, 3]
    )
    assert np.abs(in_world - tracked).max() < 1e-4  # where it was tracked, in the world
    assert np.abs(seen - track.keypoints_cam[::2, 1]).max() > 0.05  # not where it was in the camera
    assert not np.array_equal(fixed.hand, ego)


def test_keypoint_and_mano_files_and_their_errors(simulator, mano_track, tmp_path):
    folder, track, faces, k = mano_track
    keypoints = track.keypoints_cam.astype(np.float64)
    np.save(tmp_path / "keypoints.npy", keypoints)
    kp = _hands(simulator, tmp_path / "keypoints.npy")  # world coordinates, seen by the path
    assert (
        kp.motion.record["format"] == "keypoints"
        and kp.motion.record["representation"] == "skeleton"
    )
    np.savez(tmp_path / "mano.npz", **{k_: v for k_, v in track.mano.items()})
    with pytest.raises(MissingAssetError, match="MANO") as info:
        _hands(simulator, tmp_path / "mano.npz")
    assert "\n" not in str(info.value)
    meshes = _hands(simulator, tmp_path / "mano.npz", mano_dir=folder)
    ego = _hands(simulator, folder / "hands.npz", mano_dir=folder)
    assert np.allclose(
        meshes.motion.track.vertices[:, 1], ego.motion.track.vertices[:, 1], atol=1e-5
    )
    short = track.select(np.arange(8))
    (tmp_path / "short.npz").write_bytes(short.to_npz())
    with pytest.raises(DwmDataError, match="the motion is 8 frames at 16 fps") as info:
        _hands(simulator, tmp_path / "short.npz")
    assert "\n" not in str(info.value)


# --- the command --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tiny_base, tmp_path_factory):
    """A run folder as `dwm-data train` leaves it: the weight files and its recipe.json."""
    from dwm_model.model import save_weights

    folder = tmp_path_factory.mktemp("run")
    record = {"rank": 4, "alpha": 8, "base_model": str(tiny_base), "text_length": 32}
    save_weights(trained_like(tiny_base), folder, record)
    recipe = load_recipe("tiny", ["sample.steps=2"])
    (folder / "recipe.json").write_text(json.dumps(recipe.dump()))
    return folder


def dwm_data(args: list[str], capsys) -> tuple[int, str, str]:
    """The entry point in this process (exit code, stdout, stderr), one red line on errors."""
    from cli.main import main

    saved = sys.argv
    sys.argv = ["dwm-data", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = saved
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_simulate_writes_a_triplet_sampled_as_dwm_data_sample_samples(
    room, mano_track, weights, tmp_path, capsys
):
    from dwm_data.video import decode, encode, probe
    from dwm_model.config import SampleConfig
    from dwm_model.generate import WorldModel
    from dwm_model.simulate import MotionSpec, SceneSpec, Simulator, generate

    folder = mano_track[0]
    out = tmp_path / "result"
    args = ["simulate", weights, room / "room.ply", out, "--path", room / "camera.npy"]
    args += ["--hands", folder / "hands.npz", "--mano-dir", folder, "--motion-fps", "16"]
    code, stdout, stderr = dwm_data([*args, "--prompt", "open the drawer"], capsys)
    assert code == 0, stderr
    expected = {"static.mp4", "hand.mp4", "video.mp4", "preview.mp4", "preview.png", "txt"}
    expected |= {"camera.npy", "camera_path.json", "hands.npz", "simulate.json"}
    assert set(p.name for p in out.iterdir()) == expected
    for name in ("static", "hand", "video"):
        info = probe(out / f"{name}.mp4")
        assert (info.frames, info.width, info.height, info.fps) == (FRAMES, WIDTH, HEIGHT, FPS)
    record = json.loads((out / "simulate.json").read_text())
    assert (
        record["sampled"] and record["sample"]["steps"] == 2 and record["scene"]["kind"] == "splat"
    )
    assert record["path"]["format"] == "camera.npy" and record["hands"]["representation"] == "mesh"
    assert record["inputs"]["MotionSpec"]["mano_dir"] == str(folder)
    assert np.allclose(np.load(out / "camera.npy"), demo_poses(), atol=1e-6)
    # the video is the sample command's: WorldModel.generate on the same conditions and settings
    model = WorldModel.from_weights(weights)
    conditions = Simulator(SceneSpec(room / "room.ply", room / "camera.npy"), RECIPE).conditions(
        MotionSpec(folder / "hands.npz", mano_dir=folder, motion_fps=Fraction(16))
    )
    settings = SampleConfig(steps=2, guidance=6.0, seed=42)
    direct = generate(model, conditions, "open the drawer", settings)
    codecs = RECIPE.codecs.to_codecs()
    assert np.array_equal(decode(out / "video.mp4"), decode(encode(direct, FPS, codecs["video"])))
    assert np.array_equal(
        decode(out / "hand.mp4"), decode(encode(conditions.hand, FPS, codecs["hand"]))
    )
    # the same command again: refused, the result kept; --overwrite replaces it
    code, _, stderr = dwm_data([*args, "--prompt", "x"], capsys)
    assert code == 2 and "an earlier result (pass --overwrite)" in stderr
    assert (out / "txt").read_text() == "open the drawer"


def test_no_sample_and_no_hand_write_the_condition_videos_only(room, tmp_path, capsys):
    from dwm_data.video import decode

    out = tmp_path / "nav"
    args = [
        "simulate",
        tmp_path / "no-weights",
        room / "room.ply",
        out,
        "--path",
        room / "camera.npy",
    ]
    code, _, stderr = dwm_data([*args, "--no-hand", "--no-sample", "-r", "tiny"], capsys)
    assert code == 0, stderr
    assert {"static.mp4", "hand.mp4", "simulate.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "video.mp4").exists() and not (out / "hands.npz").exists()
    assert decode(out / "hand.mp4").max() <= 2  # all black: navigation only, as the model expects
    record = json.loads((out / "simulate.json").read_text())
    assert record["hands"] == {"navigation_only": True} and not record["sampled"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("weights", "DWM weights not found"),
        ("points", "neither a Gaussian splat"),
        ("nan", "is not finite"),
        ("shear", "is not rigid"),
        ("short", "the motion is 8 frames"),
        ("two", "exactly one of --hands"),
        ("yaml", "cannot be parsed"),
        ("fps", "a frame rate must be"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    room, mano_track, tmp_path, capsys, case, message
):
    folder, track, _, _ = mano_track
    scene, path, hands = room / "room.ply", room / "camera.npy", folder / "hands.npz"
    weights = tmp_path / "weights"
    extra = ["--no-sample"]
    if case == "weights":
        extra = []
    elif case == "points":
        scene = tmp_path / "points.ply"
        scene.write_text(
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n"
        )
    elif case in ("nan", "shear"):
        poses = demo_poses()
        poses[2, :3, :3] = np.nan if case == "nan" else poses[2, :3, :3] @ np.diag([1, 1.3, 1])
        path = tmp_path / "bad.npy"
        np.save(path, poses)
    elif case == "short":
        hands = tmp_path / "short.npz"
        hands.write_bytes(track.select(np.arange(8)).to_npz())
    elif case == "yaml":
        path = tmp_path / "keys.yaml"
        path.write_text("keyframes: [unclosed\n")
    elif case == "fps":
        extra += ["--path-fps", "fast"]
    else:
        extra += ["--no-hand"]
    out = tmp_path / "out"
    args = ["simulate", weights, scene, out, "--path", path, "--hands", hands, "--motion-fps", "16"]
    code, _, stderr = dwm_data([*args, *extra, "-r", "tiny"], capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def _write_blend(path: Path) -> None:
    """A .blend with a grey wall and a red cube (emissive: the colours do not hang on lights),
    z up, metres, the camera-free scene a user might export."""
    from dwm_data.blender import import_bpy

    bpy = import_bpy()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for name, color, size, location in (
        ("wall", (0.4, 0.4, 0.4, 1), 6.0, (3.0, 0.0, 1.2)),
        ("cube", (0.9, 0.05, 0.05, 1), 0.3, (1.0, 0.0, 1.2)),
    ):
        bpy.ops.mesh.primitive_cube_add(size=1, location=location)
        obj = bpy.context.object
        obj.name = name
        obj.scale = (0.01, size, size) if name == "wall" else (size, size, size)
        material = bpy.data.materials.new(name)
        material.use_nodes = True
        nodes = material.node_tree.nodes
        nodes.clear()
        emission = nodes.new("ShaderNodeEmission")
        emission.inputs["Color"].default_value = color
        output = nodes.new("ShaderNodeOutputMaterial")
        material.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
        obj.data.materials.append(material)
    bpy.context.scene.view_settings.view_transform = "Standard"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


@pytest.mark.slow
def test_blend_scenes_render_through_cycles_where_project_says(mesh_scenes, tmp_path):
    pytest.importorskip("bpy")
    from dwm_model.simulate import SceneSpec, Simulator

    _write_blend(tmp_path / "room.blend")
    short = load_recipe("tiny", ["video.frames=2"])
    spec = SceneSpec(tmp_path / "room.blend", mesh_scenes / "keys.yaml", samples=4)
    simulator = Simulator(spec, short)
    assert simulator.record["scene"] == {
        "kind": "blend", "file": str(tmp_path / "room.blend"), "renderer": "cycles", "samples": 4,
        "up": "z", "scale": 1.0,
    }  # fmt: skip
    image = simulator.static[0]
    k = Intrinsics.from_fov(WIDTH, HEIGHT, 70)
    pose = look_at(np.array([-0.5, 0.0, 1.2]), np.array([1.0, 0.0, 1.2]))
    u, v = np.round(project(world_to_camera(np.array([1.0, 0.0, 1.2]), pose), k)).astype(int)
    row = image[v].astype(int)
    red_columns = np.nonzero((row[:, 0] > 100) & (row[:, 0] > 2 * row[:, 1]))[0]
    assert u in red_columns and abs(len(red_columns) - 2 * k.fx * 0.15 / 1.35) <= 2, row
    assert abs(int(image[2, 2, 0]) - int(image[2, 2, 1])) < 10 and image[2, 2].max() > 60


def test_hands_from_a_built_sample_with_its_cameras_and_prompt(simulator, mano_track, tmp_path):
    """--from-sample: the sample's hands.npz at its fps, its camera.npy for world placement,
    its prompt; here a sample tracked along the path itself, so both placements agree."""
    import webdataset as wds

    from dwm_data.sample import make_sample
    from dwm_model.simulate import MotionSpec, sample_prompt

    folder, track, _, _ = mano_track
    frames = track.frames
    black = np.zeros((frames, HEIGHT, WIDTH, 3), np.uint8)
    poses = np.repeat(demo_poses(), 2, axis=0)[:frames].astype(np.float32)
    sample = make_sample(
        "aria-room-00000",
        {"video": black, "static": black, "hand": black},
        16,
        RECIPE.codecs.to_codecs(),
        "sweep the table",
        {"source": {"name": "aria", "license": "CC0-1.0"}},
        camera=poses,
        hands=track.to_npz(),
    )
    with wds.TarWriter(str(tmp_path / "built-000000.tar")) as writer:
        writer.write(sample.to_wds())
    shards = (tmp_path / "built-000000.tar",)
    ego = simulator.conditions(MotionSpec(shards=shards, key="aria-room-00000"))
    world = simulator.conditions(
        MotionSpec(shards=shards, key="aria-room-00000", placement="world")
    )
    assert ego.motion.record["motion_fps"] == "16" and ego.hand.any()
    assert np.array_equal(ego.hand, world.hand)
    assert (
        sample_prompt(MotionSpec(shards=shards, key="aria-room-00000"), None) == "sweep the table"
    )
    with pytest.raises(DwmDataError, match="no sample with key nope"):
        simulator.conditions(MotionSpec(shards=shards, key="nope"))


@pytest.mark.slow
def test_keypoints_with_mano_files_are_fitted_to_meshes(simulator, mano_track, tmp_path):
    """Keypoints only, with MANO files: meshes fitted to them (as --hands mano-fit), covering
    what the true meshes cover."""
    folder, track, faces, k = mano_track
    np.save(tmp_path / "keypoints.npy", track.keypoints_cam.astype(np.float64))
    fitted = _hands(simulator, tmp_path / "keypoints.npy", mano_dir=folder)
    truth = _hands(simulator, folder / "hands.npz", mano_dir=folder)
    assert fitted.motion.record["representation"] == "mesh (mano-fit)"
    a, b = fitted.hand.any(axis=-1), truth.hand.any(axis=-1)
    assert (a & b).sum() / (a | b).sum() > 0.5
