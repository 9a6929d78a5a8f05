"""`aria-capture`: a capture (Gen1 or Gen2 recording + MPS) -> one triplet per interaction clip.

Per capture (one work unit, so the splat is trained once for all its clips): the exploration
frames before the first action train a splat of the static scene; each clip's recorded frames,
undistorted to the recipe's upright pinhole camera, give `video`; the splat rendered along the
same cameras gives `static`; Aria's hand tracking (MPS, or the glasses' own on Gen2) or an
image-based backend gives `hand`. Without MPS a Gen2 capture is posed by its on-device VIO and
its splat starts from random points in the exploration views instead of semidense points.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dwm_data.aria.capture import find_capture, is_capture, read_points
from dwm_data.aria.clips import Clip, clip_requests, exploration_frames, parse_start, select_clip
from dwm_data.aria.hands import hand_masks, hand_track
from dwm_data.aria.options import AriaOptions, AriaSettings
from dwm_data.aria.source import CaptureSource
from dwm_data.aria.static import SPLAT_FILE, SceneFit, cached_scene, fit_scene, view_points
from dwm_data.builder import Builder, UnitContext, WorkUnit
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.extras import require
from dwm_data.hands.backend import HandBackend, check_backend, skeleton_warning
from dwm_data.hands.track import HandTrack
from dwm_data.sample import Sample, make_key, make_sample
from dwm_data.splat.render import Params
from dwm_data.splat.train import Views


class AriaBuilder(Builder):
    Options = AriaOptions

    def preflight(self) -> None:
        root = Path(self.options.capture).resolve()
        if not root.is_dir():
            raise DwmDataError(f"aria-capture: {root} is not a folder")

    def plan(self) -> list[WorkUnit]:
        root = Path(self.options.capture).resolve()
        captures = (
            [root]
            if is_capture(root)
            else sorted(p for p in root.iterdir() if p.is_dir() and is_capture(p))
        )
        if not captures:
            raise DwmDataError(f"aria-capture: no capture (a .vrs or a frame folder) in {root}")
        self._check_hands()
        return [WorkUnit(id=c.name, payload={"capture": str(c)}) for c in captures]

    def _check_hands(self) -> None:
        """The hand models' files (and HaMeR's import) before any capture; MPS hands without
        MANO files are skeletons, which the official model was not trained on: say so once."""
        opts = self.options
        if opts.hands != "mps":
            check_backend(opts.hands, opts.mano_dir, opts.hamer_dir)
        elif opts.mano_dir is not None:
            check_backend("mano-fit", opts.mano_dir)
        else:
            logging.getLogger(__name__).warning(skeleton_warning("aria-capture (MPS hands)"))

    def setup(self) -> None:
        """The hand models once per worker, not per clip: MANO for MPS hands, else the backend."""
        opts = self.options
        self.mano = None
        self.backend: HandBackend | None = None
        if opts.hands != "mps":
            from dwm_data.hands.backend import make_backend

            self.backend = make_backend(opts.hands, opts.mano_dir, opts.hamer_dir)
        elif opts.mano_dir is not None:
            from dwm_data.hands.mano import ManoHands

            self.mano = ManoHands(opts.mano_dir)

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        settings = self.recipe.section("aria", AriaSettings)
        video = self.recipe.video
        files = find_capture(Path(unit.payload["capture"]))
        source = CaptureSource.open(
            files, video.width, video.height, settings.focal_scale, settings.min_hand_confidence
        )
        if self.options.hands == "mps" and source.tracking is None:
            raise UnitError(
                "hands",
                f"{files.name} has neither MPS nor on-device hand tracking; "
                "pass --hands mediapipe|mano-fit|hamer",
            )
        times = source.times_ns
        requests = clip_requests(files.root, self.options.starts, self.options.prompt)
        clips = [
            select_clip(times, parse_start(start, times), video.frames, video.rate, i, prompt)
            for i, (start, prompt) in enumerate(requests)
        ]
        explore = exploration_frames(
            times, min(c.start_ns for c in clips), settings.train_frames, settings.min_train_frames
        )
        clip_poses = [source.poses(c.frames) for c in clips]  # fails now if not covered
        params, fit = self._scene(source, explore, settings, ctx)
        for clip, poses in zip(clips, clip_poses, strict=True):
            ctx.heartbeat(f"{files.name}: clip {clip.index}")
            yield self._sample(source, clip, poses, params, fit)

    def _scene(
        self, source: CaptureSource, explore: list[int], settings: AriaSettings, ctx: UnitContext
    ) -> tuple[Params, SceneFit]:
        """The capture's splat: reloaded from the unit's scratch after a restart, else trained
        on the exploration frames (scaled to the training width, hands masked out)."""
        cache = ctx.scratch / "splat"
        scene = cached_scene(cache)
        if scene is None:
            ctx.heartbeat(f"{source.files.name}: preparing {len(explore)} exploration frames")
            views = self._views(source, explore, settings)
            if source.files.points is None:
                points = view_points(views, settings.max_points, np.random.default_rng(0))
            else:
                points = read_points(
                    source.files.points, settings.max_inv_dist_std, settings.max_dist_std
                )
            if len(points) > settings.max_points:
                keep = np.random.default_rng(0).choice(
                    len(points), settings.max_points, replace=False
                )
                points = points[np.sort(keep)]
            scene = fit_scene(
                views, points, settings.splat, settings.heldout_every, cache, ctx.heartbeat
            )
        if self.options.splats:
            target = Path(self.options.splats)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache / SPLAT_FILE, target / f"{source.files.name}.ply")
        return scene

    @staticmethod
    def _views(source: CaptureSource, explore: list[int], settings: AriaSettings) -> Views:
        torch = require("torch", "aria")
        cv2 = require("cv2", "aria")
        from dwm_data.splat.render import gsplat_K

        full = source.camera.intrinsics
        width = min(settings.train_width, full.width)
        height = int(round(full.height * width / full.width / 2)) * 2
        intr = full.scaled(width, height)
        images = np.stack(
            [
                cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
                for f in source.frames(explore)
            ]
        )
        inside = source.camera.valid_mask(source.calibrations.factory).astype(np.uint8)
        inside = cv2.resize(inside, (width, height), interpolation=cv2.INTER_NEAREST) > 0
        masks = np.broadcast_to(inside, (len(explore), height, width)).copy()
        if source.tracking is not None:
            track = hand_track(
                source.tracking, source.times_ns[explore], source.device_camera(explore[0]), intr
            )
            masks &= hand_masks(track, width, height, settings.hand_margin)
        return Views(
            images=torch.from_numpy(images).float() / 255.0,
            viewmats=torch.from_numpy(np.linalg.inv(source.poses(explore))).float(),
            Ks=torch.from_numpy(np.stack([gsplat_K(intr)] * len(explore))).float(),
            masks=torch.from_numpy(masks),
        )

    def _sample(
        self, source: CaptureSource, clip: Clip, poses: np.ndarray, params: Params, fit: SceneFit
    ) -> Sample:
        torch = require("torch", "aria")
        from dwm_data.splat.render import backend_name, gsplat_K
        from dwm_data.splat.train import device, render_views

        video = self.recipe.video
        intr = source.camera.intrinsics
        name = source.files.name
        frames = source.frames(clip.frames)
        static = render_views(
            params,
            torch.from_numpy(np.linalg.inv(poses)).float(),
            torch.from_numpy(np.stack([gsplat_K(intr)] * len(poses))).float(),
            intr.width,
            intr.height,
        )
        static = (static.numpy() * 255 + 0.5).astype(np.uint8)
        track, hand_video, hands_meta = self._hands(source, clip, frames)
        times = source.times_ns
        meta = {
            "source": {
                "name": "aria",
                "capture": name,
                "clip": clip.index,
                "license": self.options.license,
            },
            "source_frames": clip.frames,
            "timestamps_ns": [int(t) for t in times[clip.frames]],
            "interaction_start_s": round((clip.start_ns - int(times[0])) / 1e9, 6),
            "intrinsics": {k: intr.as_dict()[k] for k in ("fx", "fy", "cx", "cy")},
            "device": source.device.name,
            "calibration": source.calibrations.source_name,
            "poses": source.pose_source,
            "points": "semidense" if source.files.points else "random",
            "hands": hands_meta,
            "splat": {
                "backend": backend_name(device()),
                "gaussians": fit.gaussians,
                "steps": fit.steps,
                "train_frames": fit.train_views,
                "heldout_frames": fit.heldout_views,
                "heldout_psnr": fit.heldout_psnr,
                "ply": f"{name}.ply" if self.options.splats else None,
            },
        }
        return make_sample(
            make_key("aria", name, f"{clip.index:05d}"),
            {"video": frames, "static": static, "hand": hand_video},
            video.rate,
            self.recipe.codecs.to_codecs("aria"),
            clip.prompt,
            meta,
            camera=poses.astype(np.float32),
            hands=track.to_npz(),
        )

    def _hands(
        self, source: CaptureSource, clip: Clip, frames: np.ndarray
    ) -> tuple[HandTrack, np.ndarray, dict]:
        """Aria's landmarks (MPS or on-device) projected with the clip's cameras (as skeletons, or
        MANO meshes when MANO files are given), or an image-based backend of build-taste run on
        the frames."""
        from dwm_data.hands.render import render_hands

        camera = source.camera.intrinsics
        if self.options.hands == "mps":
            track = hand_track(
                source.tracking,
                source.times_ns[clip.frames],
                source.device_camera(clip.frames[0]),
                camera,
            )
            intr, backend, faces = camera, f"aria-{source.hand_source}", None
            if self.mano is not None:
                from dwm_data.hands.fit import fit_mano

                track = fit_mano(track, self.mano, camera)
                faces = (self.mano.faces["left"], self.mano.faces["right"])
                backend = f"{backend}+mano-fit"
        else:
            from dwm_data.hands.backend import estimate_hands

            estimate = estimate_hands(self.backend, frames, camera)
            track, intr, backend = estimate.track, estimate.intrinsics, self.options.hands
            faces = self.backend.faces if self.backend.has_meshes else None
        hand_video = render_hands(track, faces, intr, camera.width, camera.height)
        representation = "skeleton" if faces is None else "mesh"
        return track, hand_video, {"representation": representation, "backend": backend}
