"""One recording through the three passes, clip by clip, sharing every frame it can.

Interaction frames are keyed by source frame, so the frames two overlapping clips share are
rendered once (the official scripts render each clip on its own). Static frames are keyed by
(object state at the clip start, source frame): a clip that starts in the same state as an
earlier one reuses its frames. The hand pass is rasterised from the evaluated hand meshes, a
small fraction of a Cycles frame. All frames go through `FrameCache`, so a rerun after a kill
renders only what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data import blender
from dwm_data.cameras import Intrinsics, opencv_to_blender, world_to_camera
from dwm_data.errors import MissingAssetError, UnitError
from dwm_data.trumans import blend, schedule
from dwm_data.trumans.bodies import (
    BlendBody,
    Body,
    SmplxBody,
    current_camera,
    evaluate_smplx,
    load_fits,
)
from dwm_data.trumans.frames import FrameCache
from dwm_data.trumans.options import TrumansOptions, TrumansRecipe
from dwm_data.trumans.release import Recording, smplx_result_path
from dwm_data.trumans.schedule import Clip

STATIC_CAMERA = "DWM_StaticCamera"


@dataclass(frozen=True)
class PassSettings:
    """One recording's render: the recipe's clip size and length, its `trumans` knobs and the
    command's options, each declared once in `dwm_data.trumans.options`."""

    width: int
    height: int
    length: int  # frames per clip
    options: TrumansOptions
    knobs: TrumansRecipe = TrumansRecipe()

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.width, self.height, self.knobs.fov)


@dataclass
class RenderedClip:
    clip: Clip
    video: np.ndarray
    static: np.ndarray
    hand: np.ndarray
    cameras: np.ndarray  # (F, 4, 4) OpenCV camera-to-world
    moving: dict[str, list[int]]
    info: dict[str, Any] = field(default_factory=dict)


def render_recording(
    root: Path,
    recording: Recording,
    settings: PassSettings,
    scratch: Path,
    heartbeat: Callable[[str], None] = lambda message: None,
) -> Iterator[RenderedClip]:
    """Yield the chosen clips of one recording, rendered (or read back from `scratch`)."""
    from dwm_data.hands.render import render_mesh

    scene = blend.open_scene(recording.blend(root))
    rec = blend.apply_recording(scene, recording.name)
    if rec is None:
        heartbeat(f"{recording.name}: skipped, its animation set has no action for the actor")
        return
    file_compositing = blender.compositing(scene)
    knobs = settings.knobs
    device = blender.configure_cycles(
        scene,
        settings.width,
        settings.height,
        knobs.samples,
        knobs.denoise,
        knobs.threads,
    )
    windows = schedule.clips(
        rec.first, rec.last, knobs.frame_skip, settings.length, knobs.clip_stride
    )
    if not windows:
        raise UnitError(
            "clips",
            f"frames {rec.first}..{rec.last} give no {settings.length}-frame clip "
            f"at every {knobs.frame_skip}th frame",
        )
    stepped = schedule.stepped_frames(rec.first, rec.last, knobs.frame_skip)
    poses = blender.object_poses(scene, rec.objects, stepped)
    moving = {clip.index: schedule.moving_objects(poses, stepped, clip) for clip in windows}
    chosen = [c for c in windows if settings.options.clips == "all" or moving[c.index]]
    body = _make_body(root, recording, rec, settings)
    static_camera = blender.new_camera(scene, settings.intrinsics, STATIC_CAMERA)
    cache = FrameCache(scratch)
    intrinsics = settings.intrinsics
    info = {
        "device": device,
        "windows": len(windows),
        "kept": len(chosen),
        "scene_frames": [rec.first, rec.last],
        "hand_backend": body.backend,
    }
    heartbeat(
        f"{recording.name}: clips={settings.options.clips} keeps {len(chosen)} of {len(windows)} windows"
    )
    cameras: dict[int, np.ndarray] = {}

    def hand_frame() -> np.ndarray:
        cam = cameras[scene.frame_current]
        sides = [
            in_front(world_to_camera(verts, cam), faces)
            for verts, faces in zip(body.hand_vertices(), body.hand_faces(), strict=True)
        ]
        verts, faces = zip(*sides, strict=True)
        return render_mesh(
            [list(verts)], tuple(faces), intrinsics, settings.width, settings.height
        )[0]

    for clip in chosen:
        heartbeat(f"{recording.name} clip {clip.index:05d}")
        video, hand = [], []
        for frame in clip.frames:
            scene.frame_set(frame)
            body.pose(frame)
            cameras[frame] = current_camera(body)
            hand.append(cache.put_array("hand", f"{frame:06d}", hand_frame))
            video.append(
                cache.get(
                    "interaction", f"{frame:06d}", lambda p: blender.render_still(scene, p, False)
                )
            )
        static = _static_frames(
            scene, body, static_camera, clip, cameras, poses, stepped, cache, file_compositing
        )
        yield RenderedClip(
            clip,
            np.stack(video),
            np.stack(static),
            np.stack(hand),
            np.stack([cameras[f] for f in clip.frames]).astype(np.float32),
            moving[clip.index],
            info,
        )


def in_front(
    verts: np.ndarray, faces: np.ndarray, near: float = 0.01
) -> tuple[np.ndarray | None, np.ndarray]:
    """The part of a camera-frame mesh in front of the camera: the renderer drops a hand with any
    vertex behind it, and a hand brought to the face must still show what is in view."""
    faces = faces[(verts[faces, 2] > near).all(axis=1)]
    if not len(faces):
        return None, faces
    used, remapped = np.unique(faces, return_inverse=True)
    return verts[used], remapped.reshape(-1, 3)


def _make_body(
    root: Path, recording: Recording, rec: blend.Recording, settings: PassSettings
) -> Body:
    options = settings.options
    if options.body == "blend":
        return BlendBody(rec, settings.intrinsics)
    fits = load_fits(smplx_result_path(root, recording.name))
    if options.smplx_model is None:
        raise MissingAssetError(
            "SMPL-X model",
            "--smplx-model",
            "register at https://smpl-x.is.tue.mpg.de and pass --smplx-model",
        )
    gender = fits["gender"] or options.smplx_gender  # the release leaves it empty
    hand_ids = Path(options.hand_ids) if options.hand_ids else None
    motion = evaluate_smplx(fits, Path(options.smplx_model), gender, hand_ids)
    return SmplxBody(rec, settings.intrinsics, motion)


def _static_frames(
    scene: Any,
    body: Body,
    static_camera: Any,
    clip: Clip,
    cameras: dict[int, np.ndarray],
    poses: dict[str, np.ndarray],
    stepped: list[int],
    cache: FrameCache,
    compositing: bool,
) -> list[np.ndarray]:
    """The clip's camera path over the scene frozen at the clip's first frame, actor hidden,
    through the file's compositor if it has one on (the official static pass leaves it be)."""
    state = schedule.state_key(poses, stepped, clip.start)
    ego_camera, actor = scene.camera, body.actor()
    hidden_before = [obj.hide_render for obj in actor]
    prepared = False

    def render(frame: int, path: Path) -> None:
        nonlocal prepared
        if not prepared:
            scene.frame_set(clip.start)
            blender.set_hidden(actor, True)
            scene.camera = static_camera
            prepared = True
        static_camera.matrix_world = blender.to_matrix(opencv_to_blender(cameras[frame]))
        blender.render_still(scene, path, compositing)

    try:
        return [
            cache.get("static", f"{state}-{frame:06d}", lambda p, f=frame: render(f, p))
            for frame in clip.frames
        ]
    finally:
        if prepared:
            for obj, hidden in zip(actor, hidden_before, strict=True):
                obj.hide_render = hidden
            scene.camera = ego_camera
