"""`aria-capture`: a capture (recording + MPS) -> one triplet per interaction clip.

Per capture (one work unit, so the splat is trained once for all its clips): the exploration
frames before the first action train a splat of the static scene; each clip's recorded frames,
undistorted to the recipe's upright pinhole camera, give `video`; the splat rendered along the
same cameras gives `static`; MPS hand tracking (or an image-based backend) gives `hand`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from dwm_data.aria.calibration import OutputCamera, RgbCalibrations
from dwm_data.aria.capture import (
    CaptureFiles,
    find_capture,
    is_capture,
    read_online_calibrations,
    read_points,
)
from dwm_data.aria.clips import Clip, clip_requests, exploration_frames, parse_start, select_clip
from dwm_data.aria.hands import HandTracking, hand_masks, hand_track
from dwm_data.aria.static import SceneFit, fit_scene
from dwm_data.aria.trajectory import Trajectory
from dwm_data.builder import Builder, BuilderOptions, UnitContext, WorkUnit
from dwm_data.cameras import Intrinsics
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.extras import require
from dwm_data.hands.track import HandTrack
from dwm_data.sample import Sample, make_key, make_sample
from dwm_data.splat.train import SplatConfig

HandSource = Literal["mps", "mediapipe", "mano-fit", "hamer"]


class AriaOptions(BuilderOptions):
    capture: str  # one capture folder, or a folder of them
    starts: list[str] = []  # interaction starts ("12.5s", "f300"); else each capture's clips.json
    prompt: str = ""
    license: str = "unspecified"
    hands: HandSource = "mps"  # MPS hand tracking, or one of build-taste's image backends
    mano_dir: str | None = None  # with MPS hands: fit MANO and render meshes instead of skeletons
    hamer_dir: str | None = None
    splats: str | None = None  # folder to keep each capture's trained splat as <capture>.ply


class AriaSettings(BaseModel):
    """The recipe's `aria` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    focal_scale: float = 1.0  # output focal length relative to the fisheye's, at the same size
    train_frames: int = 120  # exploration frames given to the splat (spread evenly)
    min_train_frames: int = 8
    heldout_every: int = 8  # every n-th of those is held out to score the splat
    train_width: int = 320  # the splat trains at most this wide (CPU cost); renders at full size
    hand_margin: float = 0.25  # masks grow the hands' hull by this fraction of their size
    min_hand_confidence: float = 0.5
    max_inv_dist_std: float = 1e-3  # semidense point filter (projectaria-tools' defaults)
    max_dist_std: float = 5e-2
    max_points: int = 100_000
    splat: SplatConfig = SplatConfig()


class AriaBuilder(Builder):
    name = "aria-capture"
    Options = AriaOptions
    section = "aria"

    def plan(self) -> list[WorkUnit]:
        root = Path(self.options.capture).resolve()
        if not root.is_dir():
            raise DwmDataError(f"aria-capture: {root} is not a folder")
        captures = (
            [root]
            if is_capture(root)
            else sorted(p for p in root.iterdir() if p.is_dir() and is_capture(p))
        )
        if not captures:
            raise DwmDataError(f"aria-capture: no capture (a .vrs or a frame folder) in {root}")
        return [WorkUnit(id=c.name, payload={"capture": str(c)}) for c in captures]

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        settings = self.recipe.section("aria", AriaSettings)
        video = self.recipe.video
        files = find_capture(Path(unit.payload["capture"]))
        for what, path in (
            ("closed_loop_trajectory.csv", files.trajectory),
            ("semidense_points.csv.gz", files.points),
        ):
            if path is None:
                raise UnitError("capture", f"{files.name} has no MPS {what}")
        recording = files.open_recording()
        factory = recording.calibration()
        times = recording.timestamps_ns()
        if len(times) < 2:
            raise UnitError("recording", f"{files.name} holds {len(times)} RGB frame(s)")
        calibs = (
            RgbCalibrations.from_records(
                factory, read_online_calibrations(files.online_calibration)
            )
            if files.online_calibration
            else RgbCalibrations(factory)
        )
        clips = [
            select_clip(times, parse_start(start, times), video.frames, video.rate, i, prompt)
            for i, (start, prompt) in enumerate(
                clip_requests(files.root, self.options.starts, self.options.prompt)
            )
        ]
        explore = exploration_frames(
            times, min(c.start_ns for c in clips), settings.train_frames, settings.min_train_frames
        )
        trajectory = Trajectory.read(files.trajectory)
        camera = OutputCamera.for_source(factory, video.width, video.height, settings.focal_scale)
        clip_poses = [self._poses(c.frames, times, trajectory, calibs, camera) for c in clips]
        tracking = (
            HandTracking.read(files.hand_tracking, settings.min_hand_confidence)
            if files.hand_tracking
            else None
        )
        ctx.heartbeat(f"{files.name}: undistorting {len(explore)} exploration frames")
        params, fit = self._scene(
            files, recording, explore, times, trajectory, calibs, camera, tracking, settings, ctx
        )
        for clip, poses in zip(clips, clip_poses, strict=True):
            ctx.heartbeat(f"{files.name}: clip {clip.index}")
            yield self._sample(
                files, clip, poses, recording, times, calibs, camera, tracking, params, fit
            )

    @staticmethod
    def _poses(indices, times, trajectory, calibs, camera) -> np.ndarray:
        """OpenCV camera-to-world of the output camera at the given RGB frames."""
        stamps = times[indices]
        corrected = np.array([t - calibs.time_offset_ns(t) for t in stamps])
        device_cams = np.stack([camera.device_camera(calibs.at(t)) for t in stamps])
        return trajectory.at(corrected) @ device_cams

    @staticmethod
    def _frames(indices, recording, times, calibs, camera) -> np.ndarray:
        return np.stack(
            [camera.undistort(recording.frame(i), calibs.at(times[i])) for i in indices]
        )

    def _scene(
        self, files, recording, explore, times, trajectory, calibs, camera, tracking, settings, ctx
    ):
        torch = require("torch", "aria")
        cv2 = require("cv2", "aria")
        from dwm_data.splat.render import gsplat_K
        from dwm_data.splat.train import Views

        width = min(settings.train_width, camera.intrinsics.width)
        height = int(round(camera.intrinsics.height * width / camera.intrinsics.width / 2)) * 2
        intr = camera.intrinsics.scaled(width, height)
        frames = self._frames(explore, recording, times, calibs, camera)
        images = np.stack(
            [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
        )
        valid = (
            cv2.resize(
                camera.valid_mask(calibs.factory).astype(np.uint8),
                (width, height),
                interpolation=cv2.INTER_NEAREST,
            )
            > 0
        )
        masks = np.broadcast_to(valid, (len(explore), height, width)).copy()
        if tracking is not None:
            track = hand_track(tracking, times[explore], camera.device_camera(calibs.factory), intr)
            masks &= hand_masks(track, width, height, settings.hand_margin)
        c2w = self._poses(explore, times, trajectory, calibs, camera)
        views = Views(
            images=torch.from_numpy(images).float() / 255.0,
            viewmats=torch.from_numpy(np.linalg.inv(c2w)).float(),
            Ks=torch.from_numpy(np.stack([gsplat_K(intr)] * len(explore))).float(),
            masks=torch.from_numpy(masks),
        )
        points = read_points(files.points, settings.max_inv_dist_std, settings.max_dist_std)
        if len(points) > settings.max_points:
            keep = np.random.default_rng(0).choice(len(points), settings.max_points, replace=False)
            points = points[np.sort(keep)]
        params, fit = fit_scene(
            views,
            points,
            settings.splat,
            settings.heldout_every,
            ctx.scratch / "splat",
            ctx.heartbeat,
        )
        if self.options.splats:
            target = Path(self.options.splats)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx.scratch / "splat" / "splat.ply", target / f"{files.name}.ply")
        return params, fit

    def _sample(
        self,
        files: CaptureFiles,
        clip: Clip,
        poses,
        recording,
        times,
        calibs,
        camera,
        tracking,
        params,
        fit: SceneFit,
    ) -> Sample:
        torch = require("torch", "aria")
        from dwm_data.splat.render import backend_name, gsplat_K
        from dwm_data.splat.train import device, render_views

        video = self.recipe.video
        intr = camera.intrinsics
        frames = self._frames(clip.frames, recording, times, calibs, camera)
        static = render_views(
            params,
            torch.from_numpy(np.linalg.inv(poses)).float(),
            torch.from_numpy(np.stack([gsplat_K(intr)] * len(poses))).float(),
            intr.width,
            intr.height,
        )
        static = (static.numpy() * 255 + 0.5).astype(np.uint8)
        track, hand_video, hands_meta = self._hands(clip, frames, times, calibs, camera, tracking)
        splat_meta = {
            "backend": backend_name(device()),
            "gaussians": fit.gaussians,
            "steps": fit.steps,
            "train_frames": fit.train_views,
            "heldout_frames": fit.heldout_views,
            "heldout_psnr": fit.heldout_psnr,
            "ply": f"{files.name}.ply" if self.options.splats else None,
        }
        meta = {
            "source": {
                "name": "aria",
                "capture": files.name,
                "clip": clip.index,
                "license": self.options.license,
            },
            "source_frames": clip.frames,
            "timestamps_ns": [int(t) for t in times[clip.frames]],
            "interaction_start_s": round((clip.start_ns - int(times[0])) / 1e9, 6),
            "intrinsics": {k: intr.as_dict()[k] for k in ("fx", "fy", "cx", "cy")},
            "calibration": calibs.source_name,
            "hands": hands_meta,
            "splat": splat_meta,
        }
        return make_sample(
            make_key("aria", files.name, f"{clip.index:05d}"),
            {"video": frames, "static": static, "hand": hand_video},
            video.rate,
            self.recipe.codecs.to_codecs(),
            clip.prompt,
            meta,
            camera=poses.astype(np.float32),
            hands=track.to_npz(),
        )

    def _hands(
        self, clip, frames, times, calibs, camera, tracking
    ) -> tuple[HandTrack, np.ndarray, dict]:
        from dwm_data.hands.render import render_mesh, render_skeleton

        intr: Intrinsics = camera.intrinsics
        opts = self.options
        if opts.hands == "mps":
            if tracking is None:
                raise UnitError(
                    "hands",
                    "the capture has no MPS hand tracking; pass --hands mediapipe|mano-fit|hamer",
                )
            track = hand_track(
                tracking, times[clip.frames], camera.device_camera(calibs.at(clip.start_ns)), intr
            )
            if opts.mano_dir is None:
                return (
                    track,
                    render_skeleton(track, intr, intr.width, intr.height),
                    {"representation": "skeleton", "backend": "aria-mps"},
                )
            from dwm_data.hands.fit import fit_mano
            from dwm_data.hands.mano import ManoHands

            mano = ManoHands(opts.mano_dir)
            track = fit_mano(track, mano, intr)
            faces = (mano.faces["left"], mano.faces["right"])
            return (
                track,
                render_mesh(track.vertices, faces, intr, intr.width, intr.height),
                {"representation": "mesh", "backend": "aria-mps+mano-fit"},
            )
        from dwm_data.hands.backend import estimate_hands, make_backend

        backend = make_backend(opts.hands, opts.mano_dir, opts.hamer_dir)
        estimate = estimate_hands(backend, frames, intr)
        track = estimate.track
        if backend.has_meshes:
            hand_video = render_mesh(
                track.vertices, backend.faces, estimate.intrinsics, intr.width, intr.height
            )
        else:
            hand_video = render_skeleton(track, estimate.intrinsics, intr.width, intr.height)
        return (
            track,
            hand_video,
            {"representation": "mesh" if backend.has_meshes else "skeleton", "backend": opts.hands},
        )
