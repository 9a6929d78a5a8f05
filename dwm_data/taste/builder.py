"""`build-taste`: real fixed-camera clips -> triplets, hands estimated and rendered.

The official recipe by default (DWM `resize_videos_taste_rob.py`): 8 fps, the first 49 frames,
letterboxed to 720x480, static video = frame 0 repeated; hands are estimated on the letterboxed
clip, as DWM does. Unlike the official scripts, a clip too short for the recipe is a recorded
failure, never a short sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dwm_data.builder import Builder, UnitContext, WorkUnit
from dwm_data.cameras import Intrinsics
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.hands.backend import (
    Estimate,
    HandBackend,
    backend_from,
    check_estimation,
    chosen_backend,
    estimate_hands,
)
from dwm_data.hands.render import render_hands
from dwm_data.hands.track import HandTrack
from dwm_data.sample import Sample, make_key, make_sample
from dwm_data.taste.captions import caption_key, read_captions
from dwm_data.taste.layout import TASTE_LICENSE, Clip, find_clips, is_taste_root
from dwm_data.taste.options import TasteOptions, TasteSection
from dwm_data.taste.static import clean_static_frame
from dwm_data.video import fit_size, probe, read_clip, read_frames

HANDS_FILE_SUFFIX = ".hands.npz"


class TasteBuilder(Builder):
    Options = TasteOptions
    loose_options = frozenset({"allow_missing_caption"})

    def __init__(self, recipe, options: TasteOptions):
        super().__init__(recipe, options)
        self.knobs = recipe.section("taste", TasteSection)
        self.backend: HandBackend | None = None
        self.captions: dict | None = None

    def style(self) -> str:
        """The hand video style; an impossible style/backend pair fails before any work."""
        has_meshes = self.backend_name != "mediapipe"
        style = self.options.style or ("mesh" if has_meshes else "skeleton")
        if style == "mesh" and not has_meshes:
            raise DwmDataError(
                "build-taste: the mesh style needs a backend with meshes (--hands mano-fit or "
                "hamer); mediapipe gives skeletons (--style skeleton)"
            )
        return style

    def preflight(self) -> None:
        """The style/backend pair, the backend's files and the input, before any work."""
        self.style()
        check_estimation(self.options, "build-taste", detector=not self.options.hands_files)
        data_root = Path(self.options.data_root).resolve() if self.options.data_root else None
        if data_root is not None and not data_root.is_dir():
            raise DwmDataError(f"build-taste: --data-root {data_root} is not a folder")
        source = Path(self.options.source).resolve()
        if source.is_file():
            clips = find_clips(source, data_root)
            if not any(Path(c.path).is_file() for c in clips):
                raise DwmDataError(
                    f"build-taste: none of the {len(clips)} clips listed in {source} exists "
                    f"(first: {clips[0].path}); check --data-root"
                )

    def plan(self) -> list[WorkUnit]:
        source = Path(self.options.source).resolve()
        data_root = Path(self.options.data_root).resolve() if self.options.data_root else None
        clips = find_clips(source, data_root)
        needs_captions = any(c.is_taste for c in clips) and not self.options.allow_missing_caption
        if needs_captions and self._captions_path() is None:
            raise DwmDataError(
                f"build-taste: no captions.xlsx in {source}; pass --captions FILE or "
                "--allow-missing-caption"
            )
        return [WorkUnit("/".join(c.key_parts), {"clip": c.to_json()}) for c in clips]

    @property
    def backend_name(self) -> str:
        return chosen_backend(self.options)

    def _captions_path(self) -> Path | None:
        if self.options.captions:
            return Path(self.options.captions)
        source = Path(self.options.source)
        root = source if source.is_dir() else Path(self.options.data_root or source.parent)
        if is_taste_root(root) and (root / "captions.xlsx").is_file():
            return root / "captions.xlsx"
        return None

    def setup(self) -> None:
        self.backend = backend_from(self.options)
        path = self._captions_path()
        self.captions = read_captions(path) if path is not None else {}

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        clip = Clip.from_json(unit.payload["clip"])
        path = Path(clip.path)
        if not path.is_file():
            raise UnitError("input", f"clip not found: {path}")
        prompt = self._prompt(clip)
        video = self.recipe.video
        info = probe(path)
        scale = max(1.0, self.knobs.detect_height / video.height)
        detect_w, detect_h = _even(video.width * scale), _even(video.height * scale)
        ctx.heartbeat("decoding")
        frames, source_frames = read_clip(
            path, video.frames, video.rate, detect_w, detect_h, video.resize
        )
        assumed = _assumed_intrinsics(
            info.width, info.height, detect_w, detect_h, video.resize, self.knobs.hfov_deg
        )
        known = self._known_landmarks(
            clip, source_frames, info.width, info.height, detect_w, detect_h
        )
        ctx.heartbeat(f"estimating hands ({self.backend_name})")
        estimate = estimate_hands(self.backend, frames, assumed, self.knobs.max_gap, known)
        found = int(estimate.track.valid.any(axis=1).sum())
        if found == 0:
            raise UnitError(
                "hands", f"no hands found in any of the {len(frames)} frames of {path.name}"
            )
        ctx.heartbeat("rendering hands")
        hand_video = self._render(estimate, video.width, video.height)
        first = read_frames(path, [0], detect_w, detect_h, video.resize)[0]
        static_frame, static_meta = self._static_frame(first, estimate)
        static_meta["source_frame"] = 0
        out_frames = _resize(frames, video.width, video.height)
        static = np.repeat(
            _resize(static_frame[None], video.width, video.height), len(frames), axis=0
        )
        intrinsics = estimate.intrinsics.scaled(video.width, video.height)
        track = estimate.track.rescaled(video.width / detect_w, video.height / detect_h)
        ctx.heartbeat("encoding")
        yield make_sample(
            self._key(clip),
            {"video": out_frames, "static": static, "hand": hand_video},
            video.rate,
            self.recipe.codecs.to_codecs("taste"),
            prompt,
            self._meta(clip, source_frames, intrinsics, estimate, found, static_meta),
            hands=track.to_npz(),
        )

    def _static_frame(self, first: np.ndarray, estimate: Estimate) -> tuple[np.ndarray, dict]:
        """Source frame 0 (`select=eq(n,0)`), as the official data; with --clean-static, its
        hands inpainted away (where they are in the first output frame, 1/30 s later)."""
        if not self.options.clean_static:
            return first, {"clean": False}
        silhouette = None
        if self.style() == "mesh":
            height, width = first.shape[:2]
            silhouette = self._render(estimate, width, height, frames=slice(0, 1))[0].any(axis=-1)
        cleaned = clean_static_frame(first, estimate.track, 0, silhouette)
        return cleaned.frame, {"clean": True, "method": "telea-inpaint", **cleaned.as_dict()}

    def _render(
        self, estimate: Estimate, width: int, height: int, frames: slice = slice(None)
    ) -> np.ndarray:
        track = estimate.track.select(np.arange(estimate.track.frames)[frames])
        faces = self.backend.faces if self.style() == "mesh" else None
        return render_hands(track, faces, estimate.intrinsics, width, height)

    def _prompt(self, clip: Clip) -> str:
        if clip.is_taste:
            caption = self.captions.get(caption_key(clip.subset, clip.scene, clip.clip_id))
            where = f"captions.xlsx ({clip.subset}, {clip.scene}, id {clip.clip_id})"
        else:
            text = Path(clip.path).with_suffix(".txt")
            caption = text.read_text(encoding="utf-8").strip() if text.is_file() else None
            where = text.name
        if caption:
            return caption
        if self.options.allow_missing_caption:
            return ""
        raise UnitError(
            "prompt",
            f"no caption for {Path(clip.path).name} in {where}; pass --allow-missing-caption to keep it with an empty prompt",
        )

    def _known_landmarks(
        self, clip: Clip, source_frames: list[int], src_w: int, src_h: int, width: int, height: int
    ) -> HandTrack | None:
        """Landmarks from `<clip>.hands.npz` (source frames and pixels), mapped onto the
        resampled, letterboxed frames."""
        if not self.options.hands_files:
            return None
        path = Path(clip.path).with_suffix(HANDS_FILE_SUFFIX)
        if not path.is_file():
            raise UnitError("hands", f"--hands-files is set but {path.name} is missing")
        track = HandTrack.from_npz(path.read_bytes())
        if track.frames <= max(source_frames):
            raise UnitError(
                "hands",
                f"{path.name} has {track.frames} frames, the clip needs {max(source_frames) + 1}",
            )
        scaled_w, scaled_h = fit_size(src_w, src_h, width, height, self.recipe.video.resize)
        return track.select(source_frames).rescaled(
            scaled_w / src_w, scaled_h / src_h, (width - scaled_w) // 2, (height - scaled_h) // 2
        )

    def _key(self, clip: Clip) -> str:
        return make_key("taste" if clip.is_taste else "clip", *clip.key_parts)

    def _meta(
        self,
        clip: Clip,
        source_frames: list[int],
        intrinsics: Intrinsics,
        estimate: Estimate,
        found: int,
        static_meta: dict,
    ) -> dict:
        license_ = self.options.license or (TASTE_LICENSE if clip.is_taste else "unspecified")
        source = {
            "name": "taste-rob" if clip.is_taste else "folder",
            "path": clip.path,
            "license": license_,
        }
        if clip.is_taste:
            source |= {"subset": clip.subset, "scene": clip.scene, "id": clip.clip_id}
        hamer = self.backend_name == "hamer"
        return {
            "source": source,
            "source_frames": source_frames,
            "resize": self.recipe.video.resize,
            "intrinsics": {k: intrinsics.as_dict()[k] for k in ("fx", "fy", "cx", "cy")},
            "intrinsics_origin": "hamer-full-image-camera"
            if hamer
            else f"assumed hfov {self.knobs.hfov_deg:g} deg",
            "hands": {
                "representation": self.style(),
                "backend": self.backend_name,
                "landmarks": "file" if self.options.hands_files else self.backend.detector.name,
                "frames_with_hands": found,
                "cleanup": estimate.cleanup.as_dict(),
            },
            "static": static_meta,
        }


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frames estimated at a larger size, brought to the recipe size (area-averaged)."""
    if frames.shape[1:3] == (height, width):
        return frames
    import cv2

    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def _assumed_intrinsics(
    src_w: int, src_h: int, width: int, height: int, mode: str, hfov_deg: float
) -> Intrinsics:
    """The source camera (centred principal point, assumed field of view) in the letterboxed
    or cropped frame: the focal length follows the scaled content, not the canvas."""
    scaled_w, _ = fit_size(src_w, src_h, width, height, mode)
    focal = Intrinsics.from_fov(scaled_w, height, hfov_deg).fx
    return Intrinsics(focal, focal, width / 2 - 0.5, height / 2 - 0.5, width, height)
