"""build-ego on the generated walk (true path known) and the official real-world interaction
clips (49 frames, 8 fps), with its cost on this machine.

Cameras: structure from motion alone, with the official hand videos' meshes (dilated) as the
actor masks, so the figures measure the reconstruction, not the hand detector. Static scene:
the whole builder on the real clips (its own hand detector and masks, the CPU splat settings
below), its static video scored against the interaction video outside the official hands, next
to the official static video and the first frame repeated.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

REAL_CLIPS = ("00013", "00017", "00039")
REAL_ROOT = Path("../shared/data/dwm_realworld/realworld_dynamic")
WORK_WIDTH = 480
HAND_DILATION_PX = 30  # the static video is scored outside the official hands grown this much
# A splat that fits in minutes per clip on a shared 2-core CPU (the recipe's defaults are for a
# GPU): trained 160 px wide for 500 steps, at most 10k Gaussians grown from the SfM points,
# rendered 240 px wide and upscaled (a CPU render costs with the pixels each Gaussian covers).
CPU_SPLAT = [
    "ego.train_width=160",
    "ego.render_width=240",
    "ego.splat.steps=500",
    "ego.splat.refine_start=100",
    "ego.splat.refine_every=50",
    "ego.splat.refine_stop=350",
    "ego.splat.max_gaussians=10000",
]


def _walk_rows(workdir: Path) -> list[tuple[str, str]]:
    from dwm_data.ego.masks import actor_masks
    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.ego.trajectory import path_error
    from dwm_data.fixtures.ego import SIZE, write_ego_video
    from dwm_data.hands.track import HandTrack
    from dwm_data.video import decode

    video = write_ego_video(workdir / "walk", 2.0)
    picks = list(range(7, 25, 2))
    frames = decode(video)[picks]
    with np.load(video.with_suffix(".poses.npz")) as data:
        truth = data["cam_to_world"][picks]
    track = HandTrack.from_npz(video.with_suffix(".hands.npz").read_bytes()).select(picks)
    keep = ~actor_masks(track, *SIZE, 0.3)
    cams = reconstruct(frames, keep, workdir / "walk-sfm", SfmSettings())
    error = path_error(cams.cam_to_world, truth)
    return [
        ("walk: registered frames", f"{cams.report['registered_frames']}/{len(picks)}"),
        ("walk: trajectory error / path length", f"{100 * error.relative:.2f} %"),
        ("walk: max relative rotation error", f"{error.max_rotation_deg:.2f} deg"),
        ("walk: SfM seconds", f"{cams.report['seconds']:.1f}"),
    ]


# The generated Aria capture of the aria-capture demo, built at a size SfM can work with; its
# splat is not what is measured here, so it gets a token number of steps.
ARIA_RECIPE = [
    "video.width=384",
    "video.height=256",
    "video.frames=25",
    "run.workers=1",
    "aria.splat.steps=20",
    "aria.splat.refine_start=5",
    "aria.splat.refine_stop=10",
    "aria.splat.refine_every=5",
]


def _aria_rows(workdir: Path) -> list[tuple[str, str]]:
    """SfM on the interaction video aria-capture makes of the generated capture, against the
    capture's own trajectory (its `camera.npy`: the ground truth, as MPS would give it)."""
    from dwm_data.build import build
    from dwm_data.ego.masks import actor_masks
    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.ego.trajectory import path_error
    from dwm_data.errors import UnitError
    from dwm_data.fixtures.aria import SyntheticSpec, write_synthetic_capture
    from dwm_data.hands.track import HandTrack
    from dwm_data.recipe import load_recipe
    from dwm_data.store import read_decoded

    recipe = load_recipe("dwm", ARIA_RECIPE)
    video = recipe.video
    spec = SyntheticSpec(  # as the demo sizes it for a recipe
        sensor=round(1.5 * max(video.width, video.height)),
        interact_seconds=video.frames / float(video.rate) + 0.3,
    )
    capture = write_synthetic_capture(workdir / "aria", spec)
    options = {"capture": str(capture), "splats": str(workdir / "aria-splats")}
    built = build("aria-capture", options, recipe, workdir / "aria-run", progress=False)
    if not built.ok:
        return [("aria capture: build", "failed")]
    sample, frames = next(iter(read_decoded(workdir / "aria-run")))
    video = frames["video"]
    height, width = video.shape[1:3]
    keep = ~actor_masks(HandTrack.from_npz(sample.hands), width, height, 0.3)
    try:
        cams = reconstruct(video, keep, workdir / "aria-sfm", SfmSettings())
    except UnitError as exc:  # a figure of its own: the other rows still print
        return [("aria capture: SfM", f"failed: {exc}")]
    error = path_error(cams.cam_to_world, np.asarray(sample.camera))
    return [
        ("aria capture: registered frames", f"{cams.report['registered_frames']}/{len(video)}"),
        ("aria capture: trajectory error / path length", f"{100 * error.relative:.2f} %"),
        ("aria capture: max relative rotation error", f"{error.max_rotation_deg:.2f} deg"),
        ("aria capture: SfM seconds", f"{cams.report['seconds']:.1f}"),
    ]


def _real_rows(stem: str, workdir: Path) -> list[tuple[str, str]]:
    import cv2

    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.errors import UnitError
    from dwm_data.video import decode

    video, hands = (decode(REAL_ROOT / kind / f"{stem}.mp4") for kind in ("videos", "videos_hands"))
    height = int(round(video.shape[1] * WORK_WIDTH / video.shape[2]))
    size = (WORK_WIDTH, height)
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in video])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    actor = [
        cv2.dilate(
            cv2.resize((h.max(-1) > 30).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST),
            kernel,
        )
        for h in hands
    ]
    keep = ~np.stack(actor).astype(bool)
    started = time.time()
    try:
        cams = reconstruct(frames, keep, workdir / stem, SfmSettings())
    except UnitError as exc:
        return [
            (f"{stem}: SfM", f"failed: {exc}"),
            (f"{stem}: SfM seconds", f"{time.time() - started:.1f}"),
        ]
    report = cams.report
    return [
        (f"{stem}: registered frames", f"{report['registered_frames']}/{len(frames)}"),
        (f"{stem}: mean reprojection error", f"{report['reprojection_error_px']:.2f} px"),
        (f"{stem}: focal at {WORK_WIDTH} px wide", f"{cams.intrinsics.fx:.1f} px"),
        (f"{stem}: SfM seconds", f"{report['seconds']:.1f}"),
    ]


def _static_rows(stems: list[str], workdir: Path) -> list[tuple[str, str]]:
    """The builder on the real clips (as a folder of links), each static video scored."""
    from dwm_data.build import build
    from dwm_data.recipe import load_recipe
    from dwm_data.store import read_decoded

    folder = workdir / "clips"
    folder.mkdir()
    for stem in stems:
        (folder / f"{stem}.mp4").symlink_to((REAL_ROOT / "videos" / f"{stem}.mp4").resolve())
    out = workdir / "run"
    recipe = load_recipe("dwm", [*CPU_SPLAT, "run.workers=1"])
    options = {"source": str(folder), "allow_missing_prompt": True}
    started = time.time()
    build("build-ego", options, recipe, out, progress=False)
    rows = [("static: wall seconds, all clips", f"{time.time() - started:.0f}")]
    done = {sample.key: (sample.meta, frames["static"]) for sample, frames in read_decoded(out)}
    for stem in stems:
        if f"ego-{stem}" not in done:
            rows.append((f"{stem}: static", f"failed: {_failure(out, stem)}"))
            continue
        rows += _scored(stem, *done[f"ego-{stem}"])
    return rows


def _scored(stem: str, meta: dict, ours: np.ndarray) -> list[tuple[str, str]]:
    import cv2

    from dwm_data.video import decode

    video, official, hands = (
        decode(REAL_ROOT / kind / f"{stem}.mp4")
        for kind in ("videos", "videos_static", "videos_hands")
    )
    hand = hands.max(axis=-1) > 30
    size = 2 * HAND_DILATION_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    near = np.stack([cv2.dilate(h.astype(np.uint8), kernel) > 0 for h in hand])
    first = np.repeat(video[:1], len(video), axis=0)
    static, cameras = meta["static"], meta["cameras"]

    def score(frames: np.ndarray, where: np.ndarray) -> str:
        return f"{masked_psnr(frames, video, where):.2f} dB"

    return [
        (f"{stem}: PSNR outside the hands, ours", score(ours, ~near)),
        (f"{stem}: PSNR outside the hands, official static", score(official, ~near)),
        (f"{stem}: PSNR outside the hands, first frame", score(first, ~near)),
        (f"{stem}: PSNR inside the hands, ours", score(ours, hand)),
        (f"{stem}: PSNR inside the hands, official static", score(official, hand)),
        (f"{stem}: static frames with a hand found", f"{static.get('frames_with_hands')}"),
        (f"{stem}: registered frames", f"{cameras.get('registered_frames')}/{len(video)}"),
        (f"{stem}: mean reprojection error", f"{cameras.get('reprojection_error_px')} px"),
        (f"{stem}: splat held-out PSNR", f"{static.get('heldout_psnr')} dB"),
        (f"{stem}: splat trained on", f"{static.get('scene_state')}"),
        (f"{stem}: actor mask coverage", f"{meta['masks']['mean_coverage']:.3f}"),
        (f"{stem}: moving-object mask coverage", f"{static.get('moving_mask_coverage')}"),
        (f"{stem}: Gaussians", f"{static.get('gaussians')}"),
        (f"{stem}: SfM seconds", f"{cameras.get('seconds')}"),
        (f"{stem}: splat seconds", f"{static.get('seconds')}"),
        (f"{stem}: render seconds", f"{static.get('render_seconds')}"),
    ]


def masked_psnr(frames: np.ndarray, target: np.ndarray, where: np.ndarray) -> float:
    """PSNR in dB over the pixels `where` (F, H, W) of all frames together (one pooled MSE)."""
    error = (frames.astype(np.float64) - target.astype(np.float64)) ** 2
    return float(10 * np.log10(255.0**2 / error[where].mean()))


def _failure(out: Path, stem: str) -> str:
    import json

    for path in (out / "failures").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["unit"] == stem:
                return f"{row['stage']}: {row['message']}"
    return "no sample and no recorded failure"


def main(quick: bool = False) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = _walk_rows(Path(tmp)) + _aria_rows(Path(tmp))
        stems = [s for s in REAL_CLIPS if (REAL_ROOT / "videos" / f"{s}.mp4").is_file()]
        for stem in stems[:1] if quick else stems:
            rows += _real_rows(stem, Path(tmp))
        if stems:
            rows += _static_rows(stems[:1] if quick else stems, Path(tmp))
    return rows
