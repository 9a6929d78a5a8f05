"""TRUMANS without Blender: the official clip schedule, clip selection, release layout, fits,
and the coordinate conventions at the source's edge."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dwm_data.errors import MissingAssetError, UnitError
from dwm_data.trumans import blend, release, schedule
from dwm_data.trumans.bodies import hand_mesh, load_fits, smplx_model_file
from dwm_data.trumans.camera import Y_UP_TO_Z_UP, head_carried, smplx_rest_camera, y_up_to_z_up


def test_schedule_matches_the_official_scripts():
    # rendering_strategies: frames range(start, end+1, 3); clip starts range(0, n-49+1, 25)
    clips = schedule.clips(0, 299, 3, 49, 25)
    stepped = list(range(0, 300, 3))
    starts = list(range(0, len(stepped) - 49 + 1, 25))
    assert [c.index for c in clips] == list(range(len(starts))) == [0, 1, 2]
    for clip, start in zip(clips, starts, strict=True):
        assert clip.frames == tuple(stepped[start : start + 49])
    assert clips[1].frames[0] == 75 and clips[1].frames[-1] == 75 + 144  # 145 source frames
    assert schedule.clips(1, 60, 3, 49, 25) == []  # too short for one window


def test_moving_objects_and_state_keys():
    frames = [0, 3, 6, 9, 12]
    still = np.tile(np.eye(4), (5, 1, 1))
    drawer = still.copy()
    drawer[3:, 1, 3] = 0.25  # opens between frames 6 and 9
    poses = {"drawer": drawer, "chair": still}
    early, late = schedule.Clip(0, (0, 3, 6)), schedule.Clip(1, (6, 9, 12))
    assert schedule.moving_objects(poses, frames, early) == {}
    assert schedule.moving_objects(poses, frames, late) == {"drawer": [9]}
    key = schedule.state_key
    assert key(poses, frames, 0) == key(poses, frames, 6) != key(poses, frames, 9)


def test_split_list_names_recordings(shared_data):
    lines = shared_data("splits/trumans_test.txt").read_text().splitlines()
    recordings = release.from_split(lines)
    scene, rec = lines[0].split("/")[2:4]
    assert recordings[0] == release.Recording(scene, rec)
    assert len(recordings) == len({(r.scene, r.name) for r in recordings}) <= len(lines)


def test_actions_and_prompts(tmp_path):
    (tmp_path / "Actions").mkdir()
    (tmp_path / "Actions" / "rec.txt").write_text("0\t40\twalk to the sink\n41\t90\topen the tap\n")
    actions = release.read_actions(tmp_path, "rec")
    assert actions[1] == release.Action(41, 90, "open the tap")
    assert release.prompt(actions, 30, 50) == "walk to the sink. open the tap."
    assert release.prompt(actions, 60, 70) == "open the tap."
    assert release.read_actions(tmp_path, "missing") == []
    (tmp_path / "Actions" / "bad.txt").write_text("zero\tten\n")
    with pytest.raises(UnitError, match="bad.txt:1"):
        release.read_actions(tmp_path, "bad")


def test_missing_release_is_one_clear_error(tmp_path):
    with pytest.raises(MissingAssetError, match="Recordings_blend"):
        release.scenes(tmp_path)
    with pytest.raises(MissingAssetError, match="SMPLX_MALE.npz"):
        smplx_model_file(tmp_path, "male")
    scene = tmp_path / "Recordings_blend" / "s" / "s.blend"
    with pytest.raises(MissingAssetError) as info:
        blend.open_scene(scene)
    assert str(info.value) == (
        f"TRUMANS scene .blend not found (looked in {scene}); check the release root and scene name"
    )


def test_fits_with_nan_fail_the_unit(tmp_path):
    fits = {
        k: np.zeros((4, n), np.float32)
        for k, n in (
            ("global_orient", 3),
            ("body_pose", 63),
            ("left_hand_pose", 45),
            ("right_hand_pose", 45),
            ("transl", 3),
        )
    }
    fits["body_pose"][2, 5] = np.nan
    path = tmp_path / "rec_smplx_results.pkl"
    path.write_bytes(pickle.dumps({**fits, "betas": np.zeros(0), "gender": ""}))
    with pytest.raises(UnitError, match="body_pose has NaN"):
        load_fits(path)
    with pytest.raises(UnitError, match="no SMPL-X fits"):
        load_fits(tmp_path / "absent.pkl")


def test_y_up_to_z_up_round_trip():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, 3))
    z_up = y_up_to_z_up(points)
    assert np.allclose(z_up[:, 0], points[:, 0])
    assert np.allclose(z_up[:, 1], -points[:, 2]) and np.allclose(z_up[:, 2], points[:, 1])
    assert np.allclose(z_up @ Y_UP_TO_Z_UP[:3, :3], points)  # the inverse is the transpose
    # the SMPL-X forward axis (+Z, y-up) becomes Blender's -Y, the CC4 avatar's forward
    assert np.allclose(y_up_to_z_up(np.array([0, 0, 1.0])), [0, -1, 0])


def test_smplx_camera_is_carried_by_the_head():
    joints = np.zeros((55, 3))
    joints[15] = (0, 0.25, 0.0)
    joints[23], joints[24] = (0.03, 0.31, 0.08), (-0.03, 0.31, 0.08)
    rest = smplx_rest_camera(joints)
    assert np.allclose(rest[:3, 3], (0, 0.31, 0.08))
    assert np.allclose(rest[:3, 2], (0, 0, 1)) and np.allclose(rest[:3, 1], (0, -1, 0))  # fwd, down
    head_rest = np.eye(4)
    head_rest[:3, 3] = joints[15]
    turn = np.eye(4)
    turn[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # head yawed 90 degrees, then moved
    turn[:3, 3] = (1.0, 0.2, -2.0)
    head = turn @ np.eye(4)
    camera = head_carried(head[None], head_rest, rest)[0]
    offset_rest = np.linalg.inv(head_rest) @ rest
    assert np.allclose(np.linalg.inv(head) @ camera, offset_rest)  # rigid w.r.t. the head


def test_hand_mesh_keeps_faces_inside_the_selection():
    selected = np.array([True, True, True, False, True])
    triangles = np.array([[0, 1, 2], [1, 2, 3], [0, 2, 4]])
    mesh = hand_mesh(selected, triangles)
    assert mesh.vertex_ids.tolist() == [0, 1, 2, 4]
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_hand_part_behind_the_camera_is_dropped():
    from dwm_data.trumans.passes import in_front

    verts = np.array([[0, 0, 0.5], [0.1, 0, 0.5], [0, 0.1, 0.5], [0, 0, -0.2]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    kept, kept_faces = in_front(verts, faces)
    assert kept_faces.tolist() == [[0, 1, 2]] and np.array_equal(kept, verts[:3])
    assert in_front(verts, faces[1:] * 0 + [[3, 3, 3]])[0] is None


def test_hand_vertices_from_the_id_file_or_the_skinning_weights(tmp_path):
    from dwm_data.trumans.bodies import SMPLX_HAND_JOINTS, hand_selection

    rng = np.random.default_rng(1)
    weights = rng.random((300, 55))
    weights[:40, 20] = weights[40:80, 45] = 10.0  # left wrist, a right finger joint
    by_weights = hand_selection(weights, None, 300)
    assert np.flatnonzero(by_weights[0]).tolist()[:40] == list(range(40))
    assert by_weights[1][40:80].all()
    strongest = weights.argmax(axis=1)
    assert by_weights[0].sum() == np.isin(strongest, SMPLX_HAND_JOINTS["L"]).sum()
    ids = {"left_hand": np.flatnonzero(by_weights[0]), "right_hand": np.flatnonzero(by_weights[1])}
    (tmp_path / "MANO_SMPLX_vertex_ids.pkl").write_bytes(pickle.dumps(ids))
    by_file = hand_selection(weights * 0, tmp_path / "MANO_SMPLX_vertex_ids.pkl", 300)
    assert all(np.array_equal(a, b) for a, b in zip(by_file, by_weights, strict=True))
    with pytest.raises(MissingAssetError, match="MANO_SMPLX_vertex_ids"):
        hand_selection(weights, tmp_path / "absent.pkl", 300)


def test_scenes_are_the_folders_holding_a_blend(tmp_path, shared_data):
    # the official batch walks Recordings_blend/ for *.blend and names each after its folder;
    # the split's "-copy" scene folders are taken to hold a file named without "-copy"
    lines = shared_data("splits/trumans_test.txt").read_text().splitlines()
    lines += shared_data("splits/trumans_train.txt").read_text().splitlines()
    copies = sorted({r.scene for r in release.from_split(lines) if r.scene.endswith("-copy")})
    assert len(copies) == 5
    folder = tmp_path / "Recordings_blend"
    for scene in copies:
        (folder / scene).mkdir(parents=True)
        (folder / scene / f"{scene.removesuffix('-copy')}.blend").write_bytes(b"")
    (folder / "plain").mkdir()
    (folder / "plain" / "plain.blend").write_bytes(b"")
    (folder / "plain" / "plain.blend1").write_bytes(b"")  # Blender's backup is not a scene
    (folder / "group" / "nested").mkdir(parents=True)
    (folder / "group" / "nested" / "scene.blend").write_bytes(b"")
    assert release.scenes(tmp_path) == sorted([*copies, "nested", "plain"])
    found = release.Recording(copies[0], "2023-01-17@00-33-01").blend(tmp_path)
    assert found == folder / copies[0] / f"{copies[0].removesuffix('-copy')}.blend"
    with pytest.raises(UnitError, match="folder named 'absent' .*, found none"):
        release.Recording("absent", "rec").blend(tmp_path)
    (folder / "plain" / "other.blend").write_bytes(b"")  # ambiguous: only this scene fails
    assert "plain" in release.scenes(tmp_path)
    with pytest.raises(UnitError, match="folder named 'plain' .*other.blend, .*plain.blend"):
        release.Recording("plain", "rec").blend(tmp_path)
    assert release.Recording(copies[0], "rec").blend(tmp_path) == found
