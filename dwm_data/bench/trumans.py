"""render-trumans cost: Cycles renders per delivered triplet frame, and the hand pass vs Cycles.

Both figures come from one run on the generated TRUMANS-format recording (`dwm_data.fixtures.trumans`).
Render counts do not depend on resolution or samples, so they are counted on tiny renders with
the official schedule over a recording of four official clips (the drawer opens in the first);
the official scripts render every clip's 49 interaction and 49 static frames (2.0 Cycles renders
per delivered frame). The hand pass is timed against one Cycles frame at the recipe's size and
samples on the same scene and camera.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from dwm_data.recipe import load_recipe

OFFICIAL_RENDERS_PER_FRAME = 2.0  # one interaction and one static Cycles render per frame


def main(quick: bool = False) -> list[tuple[str, str]]:
    from dwm_data.fixtures.trumans import RECORDINGS, write_release

    with tempfile.TemporaryDirectory(prefix="dwm-bench-trumans-") as tmp:
        release = write_release(Path(tmp) / "release", frames=76 if quick else 370)
        rows = _render_counts(release, Path(tmp), quick)
        rows += _hand_pass_cost(release, RECORDINGS[0], quick)
    return rows


def _render_counts(release, tmp: Path, quick: bool) -> list[tuple[str, str]]:
    from dwm_data.trumans.frames import FrameCache
    from dwm_data.trumans.options import TrumansOptions, TrumansRecipe
    from dwm_data.trumans.passes import PassSettings, render_recording
    from dwm_data.trumans.release import Recording

    length, stride = (9, 5) if quick else (49, 25)
    recording = Recording(release.scene, release.recordings[0])
    knobs = TrumansRecipe(clip_stride=stride, samples=1, denoise=False)
    settings = PassSettings(64, 48, length, TrumansOptions(root=str(release.root)), knobs)
    clips = list(render_recording(release.root, recording, settings, tmp / "counts"))
    renders = FrameCache(tmp / "counts").rendered()
    cycles = sum(kind in ("interaction", "static") for kind, _ in renders)
    delivered = len(clips) * length
    ours = cycles / delivered
    kept = sum(bool(c.moving) for c in clips)
    return [
        ("schedule", f"{len(clips)} clips of {length} frames every {stride} (skip 3)"),
        ("Cycles renders per triplet frame, official", f"{OFFICIAL_RENDERS_PER_FRAME:.2f}"),
        ("Cycles renders per triplet frame, ours", f"{ours:.2f}"),
        ("ours / official (target <= 0.77x)", f"{ours / OFFICIAL_RENDERS_PER_FRAME:.2f}x"),
        ("windows kept: --clips all / interaction", f"{len(clips)} / {kept}"),
    ]


def _hand_pass_cost(release, recording: str, quick: bool) -> list[tuple[str, str]]:
    from dwm_data import blender
    from dwm_data.cameras import world_to_camera
    from dwm_data.hands.render import render_mesh
    from dwm_data.trumans import blend
    from dwm_data.trumans.bodies import BlendBody, current_camera
    from dwm_data.trumans.options import TrumansOptions, TrumansRecipe
    from dwm_data.trumans.passes import PassSettings

    video = load_recipe("tiny" if quick else "dwm").video
    width, height = (192, 128) if quick else (video.width, video.height)
    samples, denoise = (16, False) if quick else (64, True)
    knobs = TrumansRecipe(samples=samples, denoise=denoise)
    options = TrumansOptions(root=str(release.root))
    settings = PassSettings(width, height, video.frames, options, knobs)
    scene = blend.open_scene(release.blend)
    rec = blend.apply_recording(scene, recording)
    blender.configure_cycles(scene, width, height, samples, denoise, 0)
    body = BlendBody(rec, settings.intrinsics)
    faces = body.hand_faces()
    hand_times = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, frame in enumerate(range(0, 60, 6)):
            scene.frame_set(frame)
            started = time.perf_counter()
            camera = current_camera(body)
            local = [world_to_camera(v, camera) for v in body.hand_vertices()]
            render_mesh([local], faces, settings.intrinsics, width, height)
            if index:  # the first frame also creates the GL context
                hand_times.append(time.perf_counter() - started)
        scene.frame_set(30)
        blender.render_still(scene, Path(tmp) / "warm.png", False)  # BVH and kernels are built once
        scene.frame_set(33)
        started = time.perf_counter()
        blender.render_still(scene, Path(tmp) / "frame.png", False)
        cycles = time.perf_counter() - started
    hand = float(np.median(hand_times))
    return [
        (
            f"Cycles frame {width}x{height}, {samples} spp{' + denoise' if denoise else ''}",
            f"{cycles:.2f} s",
        ),
        ("hand pass frame (mesh from Blender + raster)", f"{hand * 1000:.1f} ms"),
        ("hand pass / Cycles frame (target < 2%)", f"{100 * hand / cycles:.2f}%"),
    ]
