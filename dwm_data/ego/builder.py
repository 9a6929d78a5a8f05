"""`build-ego`: any egocentric video -> one triplet, with cameras recovered from the video itself.

Per video (one work unit): resample to the recipe's rate, find the window of the recipe's length
where hands act, mask the actor (hands, forearms), recover the clip's cameras by structure from
motion on its own frames (or take the user's `--poses`), fit a splat of the scene to the frames
before the first hand (all frames when too few), with the actor and moving objects masked out,
and render it along the cameras as the static video, and estimate and render the hands in the
recovered camera; with `--depth`, the user's depth maps are fitted to the reconstruction, lifted
to a point cloud and drawn along the cameras as `points.mp4` too (`dwm_data.ego.points`). The
reconstruction and the splat are cached in the unit's scratch folder, so a killed unit does not
redo them. A video whose camera does not move gets one frame as its static video, the last
before the first hand when there is one (marked in json); every other failure (too short,
corrupt, too dark for features, a partial reconstruction, depth maps missing or not fitting the
reconstruction) is a recorded failure with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dwm_data.builder import Builder, UnitContext, WorkUnit
from dwm_data.cameras import Intrinsics
from dwm_data.ego.clips import choose_window, find_videos, resampled_frames
from dwm_data.ego.masks import actor_masks, grown
from dwm_data.ego.options import EgoOptions, EgoSection
from dwm_data.ego.sfm import Cameras
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.hands.backend import (
    Estimate,
    HandBackend,
    backend_from,
    check_estimation,
    chosen_backend,
    clean_and_follow,
    estimate_hands,
    in_camera,
    landmark_track,
)
from dwm_data.hands.cleanup import CleanupReport
from dwm_data.hands.track import HandTrack
from dwm_data.sample import Sample, make_key, make_sample
from dwm_data.video import fit_size, place, probe, read_frames

HANDS_FILE_SUFFIX = ".hands.npz"


class EgoBuilder(Builder):
    Options = EgoOptions
    loose_options = frozenset({"allow_missing_prompt"})

    def __init__(self, recipe, options: EgoOptions):
        super().__init__(recipe, options)
        self.knobs = recipe.section("ego", EgoSection)
        self.backend: HandBackend | None = None

    @property
    def backend_name(self) -> str:
        return chosen_backend(self.options)

    def preflight(self) -> None:
        """The input, the poses folder, the hand backend's files and pycolmap, before any work."""
        from dwm_data.extras import require

        opts = self.options
        source = Path(opts.source)
        if not source.exists():
            raise DwmDataError(f"build-ego: {source} does not exist")
        for flag, folder in (("--poses", opts.poses), ("--depth", opts.depth)):
            if folder is not None and not Path(folder).is_dir():
                raise DwmDataError(f"build-ego: {flag} {folder} is not a folder")
        if opts.poses is None:
            require("pycolmap", "ego")
        # the detector always runs: it looks for the actor in the static video
        check_estimation(opts, "build-ego", detector=True)

    def plan(self) -> list[WorkUnit]:
        return [
            WorkUnit(key, {"path": str(path)})
            for key, path in find_videos(Path(self.options.source))
        ]

    def setup(self) -> None:
        self.backend = backend_from(self.options)

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        path = Path(unit.payload["path"])
        if not path.is_file():
            raise UnitError("input", f"video not found: {path}")
        prompt = self._prompt(path)
        video, knobs = self.recipe.video, self.knobs
        info = probe(path)
        work_w = _even(min(knobs.work_width, info.width))
        work_h = _even(info.height * work_w / info.width)
        picks = resampled_frames(path, video.rate, video.frames)
        ctx.heartbeat(f"finding the hands in {len(picks)} frames")
        presence, cleanup = self._presence(path, picks, info.width, info.height, work_w, work_h)
        start = choose_window(presence.valid.any(axis=1), video.frames, knobs.lead_frames)
        window = list(range(start, start + video.frames))
        source_frames = [picks[i] for i in window]
        frames = read_frames(path, source_frames, work_w, work_h)
        known = presence.select(window)
        keep = ~actor_masks(known, work_w, work_h, knobs.hand_margin)
        scene_keep = ~grown(~keep, round(knobs.scene_mask_grow * work_w))  # splat, points
        ctx.heartbeat("recovering the cameras")
        cameras, moving = self._cameras(path, frames, keep, source_frames, ctx)
        ctx.heartbeat(f"estimating hands ({self.backend_name})")
        # the detector's hands were found, cleaned up and followed once, on these very frames
        landmarks = known if cleanup is None else in_camera(known, cameras.intrinsics)
        estimate = estimate_hands(
            self.backend, frames, cameras.intrinsics, knobs.max_gap, landmarks
        )
        scaled_w, scaled_h = fit_size(
            info.width, info.height, video.width, video.height, video.resize
        )
        dx, dy = _offset(scaled_w, video.width), _offset(scaled_h, video.height)
        out_frames = read_frames(path, source_frames, video.width, video.height, video.resize)
        content = cameras.intrinsics.scaled(scaled_w, scaled_h)
        points, points_meta = self._points(
            path, source_frames, frames, scene_keep, cameras, moving, content, ctx
        )
        if moving:
            ctx.heartbeat("fitting the static scene")
            static, static_meta = self._static(unit, frames, scene_keep, cameras, content, ctx)
        else:
            rest = _rest_frame(presence.valid.any(axis=1), start)
            still = read_frames(path, [picks[rest]], video.width, video.height, video.resize)
            static = np.repeat(still, len(out_frames), axis=0)
            static_meta = {
                "method": "one frame (no camera motion)",
                "source_frame": picks[rest],
                "actor_free": bool(rest < start),
            }
        if points_meta is not None:
            static_meta["points"] = points_meta
        hand_video = self._hand_video(estimate, scaled_w, scaled_h, video.width, video.height)
        track = estimate.track.rescaled(scaled_w / work_w, scaled_h / work_h, dx, dy)
        intrinsics = Intrinsics(
            content.fx, content.fy, content.cx + dx, content.cy + dy, video.width, video.height
        )
        meta = {
            "source": {
                "name": "egocentric-video",
                "path": str(path),
                "license": self.options.license,
            },
            "source_frames": source_frames,
            "clip_start_frame": start,
            "resize": video.resize,
            "intrinsics": {k: intrinsics.as_dict()[k] for k in ("fx", "fy", "cx", "cy")},
            "cameras": cameras.report,
            "static": static_meta,
            "masks": {
                "method": "hand hull + forearm wedge (the hand's and its body's directions)",
                "mean_coverage": round(float(1 - keep.mean()), 4),
                "scene_coverage": round(float(1 - scene_keep.mean()), 4),
                "frames_with_actor": int((~keep).any(axis=(1, 2)).sum()),
            },
            "hands": {
                "representation": "mesh" if self.backend.has_meshes else "skeleton",
                "backend": self.backend_name,
                "landmarks": "file" if self.options.hands_files else self.backend.detector.name,
                "frames_with_hands": int(estimate.track.valid.any(axis=1).sum()),
                "cleanup": (cleanup or estimate.cleanup).as_dict(),
            },
        }
        sample = make_sample(
            make_key("ego", *unit.id.split("/")),
            {"video": out_frames, "static": static, "hand": hand_video}
            | ({} if points is None else {"points": points}),
            video.rate,
            self.recipe.codecs.to_codecs("aria"),
            prompt,
            meta,
            camera=cameras.cam_to_world.astype(np.float32),
            hands=track.to_npz(),
        )
        if moving:
            ctx.heartbeat("looking for hands in the static video")
            sample.meta["static"]["frames_with_hands"] = self._hands_seen(sample.static)
        yield sample

    def _hands_seen(self, static_mp4: bytes) -> int:
        """Frames of the static video as stored in which the detector finds a hand: the actor
        must be gone from what users get, and at its egocentric thresholds (a low-scored hand
        is tracked on) the detector's verdict on a blurred region can flip with the encoder's
        noise, so it is asked about the encoded frames, not the rendered ones."""
        from dwm_data.video import decode

        frames = decode(static_mp4)
        height, width = frames.shape[1:3]
        any_camera = Intrinsics.from_fov(width, height, self.knobs.hfov_deg)
        seen = landmark_track(frames, self.backend.detector, any_camera)
        return int(seen.valid.any(axis=1).sum())

    def _presence(
        self, path: Path, picks: list[int], src_w: int, src_h: int, width: int, height: int
    ) -> tuple[HandTrack, CleanupReport | None]:
        """Hands in every resampled frame, in working pixels, and the detector's clean-up:
        from `<stem>.hands.npz` (source frames and pixels; no clean-up), or the backend's
        detector cleaned up and followed where it lost them (a hand the masks miss is learnt
        into the static scene). Placed in the assumed camera until the cameras are known."""
        if self.options.hands_files:
            file = path.with_suffix(HANDS_FILE_SUFFIX)
            if not file.is_file():
                raise UnitError("hands", f"--hands-files is set but {file.name} is missing")
            track = HandTrack.from_npz(file.read_bytes())
            if track.frames <= max(picks):
                raise UnitError(
                    "hands",
                    f"{file.name} has {track.frames} frames, the video needs {max(picks) + 1}",
                )
            return track.select(picks).rescaled(width / src_w, height / src_h), None
        frames = read_frames(path, picks, width, height)
        assumed = Intrinsics.from_fov(width, height, self.knobs.hfov_deg)
        detected = landmark_track(frames, self.backend.detector, assumed)
        return clean_and_follow(frames, detected, assumed, self.knobs.max_gap)

    def _cameras(
        self,
        path: Path,
        frames: np.ndarray,
        keep: np.ndarray,
        source_frames: list[int],
        ctx: UnitContext,
    ) -> tuple[Cameras, bool]:
        """The clip's cameras and whether the camera moved (no motion: no reconstruction)."""
        from dwm_data.ego.cache import cached_cameras
        from dwm_data.ego.sfm import camera_motion, reconstruct

        height, width = frames.shape[1:3]
        if self.options.poses is not None:
            from dwm_data.ego.poses import given_cameras

            return given_cameras(
                Path(self.options.poses), path.stem, source_frames, width, height
            ), True
        motion = camera_motion(frames, keep)
        if motion < self.knobs.min_motion:
            still = Cameras(
                Intrinsics.from_fov(width, height, self.knobs.hfov_deg),
                np.repeat(np.eye(4)[None], len(frames), axis=0),
                np.zeros((0, 3)),
                np.zeros((0, 3), np.uint8),
                {
                    "origin": f"none: no camera motion (median shift {motion:.4f} of the width)",
                    "registered_frames": 0,
                    "intrinsics": f"assumed hfov {self.knobs.hfov_deg:g} deg",
                },
            )
            return still, False

        def recover() -> Cameras:
            ctx.heartbeat("structure from motion (pycolmap)")
            cameras = reconstruct(frames, keep, ctx.scratch / "sfm", self.knobs.sfm)
            cameras.report["motion"] = round(motion, 4)
            return cameras

        return cached_cameras(ctx.scratch, recover, ctx.heartbeat), True

    def _static(
        self,
        unit: WorkUnit,
        frames: np.ndarray,
        keep: np.ndarray,
        cameras: Cameras,
        content: Intrinsics,
        ctx: UnitContext,
    ) -> tuple[np.ndarray, dict]:
        """The static video at the recipe size, and its provenance: the splat rendered at the
        scaled content size and placed on the canvas as the video is (bars or crop)."""
        from dwm_data.ego.cache import cached_splat
        from dwm_data.ego.static import fit_static, render_static

        scene = cached_splat(
            ctx.scratch,
            lambda: fit_static(
                frames,
                keep,
                cameras.intrinsics,
                cameras.cam_to_world,
                cameras.points,
                self.knobs,
                ctx.heartbeat,
            ),
            ctx.heartbeat,
        )
        started = time.time()
        rendered = render_static(
            scene.params, content, cameras.cam_to_world, self.knobs.render_width
        )
        scene.report["render_seconds"] = round(time.time() - started, 1)
        video = self.recipe.video
        static = np.stack([place(f, video.width, video.height) for f in rendered])
        report = {"method": "gaussian-splat", **scene.report, "ply": None}
        if self.options.splats:
            from dwm_data.splat.ply import save_ply

            target = Path(self.options.splats)
            target.mkdir(parents=True, exist_ok=True)
            name = f"{make_key('ego', *unit.id.split('/'))}.ply"
            save_ply(scene.params, target / name)
            report["ply"] = name
        return static, report

    def _points(
        self,
        path: Path,
        source_frames: list[int],
        frames: np.ndarray,
        keep: np.ndarray,
        cameras: Cameras,
        moving: bool,
        content: Intrinsics,
        ctx: UnitContext,
    ) -> tuple[np.ndarray | None, dict | None]:
        """The point-cloud static video (`--depth`) at the recipe size, placed on the canvas as
        the video is, and its provenance; drawn before the splat is fitted, so a bad depth file
        fails the unit in seconds. A still camera has no cameras to lift the depth with."""
        if self.options.depth is None:
            return None, None
        if not moving:
            return None, {"skipped": "no camera motion: no cameras to lift the depth with"}
        from dwm_data.ego.points import points_video

        ctx.heartbeat("lifting the depth maps to a point cloud")
        drawn, report = points_video(
            Path(self.options.depth),
            path.stem,
            source_frames,
            frames,
            keep,
            cameras,
            content,
            self.knobs,
        )
        video = self.recipe.video
        return np.stack([place(f, video.width, video.height) for f in drawn]), report

    def _hand_video(
        self, estimate: Estimate, scaled_w: int, scaled_h: int, width: int, height: int
    ) -> np.ndarray:
        """The shared hand video at the scaled content size, placed on the canvas as the video."""
        from dwm_data.hands.render import render_hands

        drawn = render_hands(
            estimate.track, self.backend.faces, estimate.intrinsics, scaled_w, scaled_h
        )
        return np.stack([place(f, width, height) for f in drawn])

    def _prompt(self, path: Path) -> str:
        text = path.with_suffix(".txt")
        if text.is_file() and text.read_text(encoding="utf-8").strip():
            return text.read_text(encoding="utf-8").strip()
        if self.options.allow_missing_prompt:
            return ""
        raise UnitError(
            "prompt",
            f"no prompt {text.name} beside {path.name}; pass --allow-missing-prompt to keep it "
            "with an empty prompt",
        )


def _rest_frame(has_hand: np.ndarray, start: int) -> int:
    """The resampled frame a still camera's static video shows: the last one before the clip
    with no hand in view (the scene at rest, nobody in it), else the clip's first."""
    free = np.flatnonzero(~has_hand[:start])
    return int(free[-1]) if len(free) else start


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _offset(scaled: int, canvas: int) -> int:
    """Where `place` puts the scaled frame's origin on the canvas (bars: +, crop: -)."""
    return (canvas - scaled) // 2 if scaled <= canvas else -((scaled - canvas) // 2)
