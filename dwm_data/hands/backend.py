"""Hand estimation backends behind one interface, and the one pipeline that runs them.

Every backend starts from a detector's landmarks (MediaPipe's boxes and sides, as DWM's fork
does, or HaMeR's own ViTPose hands for `hamer`), the landmark track is cleaned up over time, and
a backend may then refine it into meshes (HaMeR's network, or a MANO fit). Backends check their files when they are made, so a run with a missing
model fails at start with one line instead of failing every clip.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.errors import DwmDataError
from dwm_data.hands.cleanup import CleanupReport, clean_track
from dwm_data.hands.follow import follow_lost_hands
from dwm_data.hands.landmarks import Detection, MediaPipeHands, lift_to_camera
from dwm_data.hands.track import HandTrack

if TYPE_CHECKING:
    from dwm_data.hands.options import HandEstimationOptions

BACKENDS = ("mediapipe", "hamer", "mano-fit")
DETECTORS = ("mediapipe", "vitpose")


class HandDetector(Protocol):
    name: str  # recorded in a sample's json

    def detect(self, frames: np.ndarray) -> list[list[Detection]]: ...


class HandBackend(ABC):
    name: ClassVar[str]
    has_meshes: ClassVar[bool]

    def __init__(self, detector: HandDetector | None = None) -> None:
        self.detector = detector if detector is not None else MediaPipeHands()

    def camera(self, assumed: Intrinsics) -> Intrinsics:
        """The camera the track is expressed in (HaMeR brings its own)."""
        return assumed

    @property
    def faces(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(left, right) mesh faces for `render_mesh`, for backends with meshes."""
        return None

    @abstractmethod
    def refine(self, frames: np.ndarray, landmarks: HandTrack, intrinsics: Intrinsics) -> HandTrack:
        """The final track from the cleaned landmark track."""


class MediaPipeBackend(HandBackend):
    name = "mediapipe"
    has_meshes = False

    def refine(self, frames: np.ndarray, landmarks: HandTrack, intrinsics: Intrinsics) -> HandTrack:
        return landmarks


class ManoFitBackend(HandBackend):
    name = "mano-fit"
    has_meshes = True

    def __init__(self, mano_dir: Path | str | None, detector: HandDetector | None = None):
        from dwm_data.hands.mano import ManoHands

        self.hands = ManoHands(mano_dir)  # fails here, at start, when the files are missing
        super().__init__(detector)

    @property
    def faces(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hands.faces["left"], self.hands.faces["right"]

    def refine(self, frames: np.ndarray, landmarks: HandTrack, intrinsics: Intrinsics) -> HandTrack:
        from dwm_data.hands.fit import fit_mano

        return fit_mano(landmarks, self.hands, intrinsics)


class HamerBackend(HandBackend):
    name = "hamer"
    has_meshes = True

    def __init__(
        self,
        hamer_dir: Path | str | None,
        checkpoint: Path | str | None,
        device: str = "cpu",
        detector: HandDetector | None = None,
    ):
        from dwm_data.hands.hamer import load_hamer

        self.network = load_hamer(hamer_dir, checkpoint, device)
        super().__init__(detector)

    def camera(self, assumed: Intrinsics) -> Intrinsics:
        return self.network.settings.intrinsics(assumed.width, assumed.height)

    @property
    def faces(self) -> tuple[np.ndarray, np.ndarray]:
        return self.network.faces

    def refine(self, frames: np.ndarray, landmarks: HandTrack, intrinsics: Intrinsics) -> HandTrack:
        from dwm_data.hands.hamer import estimate_with_hamer

        return estimate_with_hamer(self.network, frames, landmarks)


def resolve_backend(
    name: str,
    mano_dir: Path | str | None = None,
    hamer_dir: Path | str | None = None,
    hamer_checkpoint: Path | str | None = None,
) -> str:
    """The backend `auto` stands for: HaMeR when its files are given, else a MANO fit when the
    MANO files are given, else MediaPipe skeletons. The official model was trained on MANO
    meshes, so meshes are the default whenever the user has the files; a named backend is kept."""
    if name != "auto":
        return name
    if hamer_dir is not None or hamer_checkpoint is not None:
        return "hamer"
    return "mano-fit" if mano_dir is not None else "mediapipe"


def skeleton_warning(what: str) -> str:
    """The one line said when hand videos fall back to skeletons."""
    from dwm_data.hands.mano import HOW_TO_GET_MANO

    return (
        f"{what}: hand videos are skeletons, which will not match the official model (trained "
        f"on MANO meshes); for meshes pass --hamer-dir (a HaMeR clone) or --mano-dir: "
        f"{HOW_TO_GET_MANO}"
    )


def check_backend(
    name: str,
    mano_dir: Path | str | None = None,
    hamer_dir: Path | str | None = None,
    hamer_checkpoint: Path | str | None = None,
) -> None:
    """The cheap part of making a backend, at plan time: its files exist and HaMeR imports."""
    if name == "mano-fit":
        from dwm_data.hands.mano import mano_paths

        mano_paths(mano_dir)
    elif name == "hamer":
        from dwm_data.hands.hamer import check_hamer

        check_hamer(hamer_dir, hamer_checkpoint)


def make_backend(
    name: str,
    mano_dir: Path | str | None = None,
    hamer_dir: Path | str | None = None,
    hamer_checkpoint: Path | str | None = None,
    device: str = "cpu",
    detector: HandDetector | None = None,
) -> HandBackend:
    """The backend `name` stands for, on `detector`'s hands (None: MediaPipe's)."""
    name = resolve_backend(name, mano_dir, hamer_dir, hamer_checkpoint)
    if name == "mediapipe":
        return MediaPipeBackend(detector)
    if name == "mano-fit":
        return ManoFitBackend(mano_dir, detector)
    if name == "hamer":
        return HamerBackend(hamer_dir, hamer_checkpoint, device, detector)
    raise ValueError(f"unknown hand backend '{name}' (known: auto, {', '.join(BACKENDS)})")


def chosen_backend(options: HandEstimationOptions) -> str:
    """The backend a source's `--hands` stands for (the same in every worker)."""
    return resolve_backend(
        options.backend, options.mano_dir, options.hamer_dir, options.hamer_checkpoint
    )


def check_estimation(options: HandEstimationOptions, command: str, *, detector: bool) -> None:
    """A source's hand estimation at plan time, so a missing model fails the run at start:
    the backend's files, the skeleton fallback said once, and MediaPipe when the source runs
    the detector on frames (not when every hand comes from `.hands.npz` files)."""
    name = chosen_backend(options)
    check_detector_pair(options.hand_detector, name)
    check_backend(name, options.mano_dir, options.hamer_dir, options.hamer_checkpoint)
    if options.backend == "auto" and name == "mediapipe":
        logging.getLogger(__name__).warning(skeleton_warning(command))
    if detector and options.hand_detector == "vitpose":
        from dwm_data.hands.vitpose import check_vitpose

        check_vitpose(options.hamer_dir, options.vitpose, options.detector_dir)
    elif detector:
        from dwm_data.extras import require

        require("mediapipe", "hands")


def check_detector_pair(detector: str, backend: str) -> None:
    """ViTPose gives hands in pixels only: the backends that need MediaPipe's metric landmarks
    (a MANO fit, metric skeletons) cannot take them."""
    if detector == "vitpose" and backend != "hamer":
        raise DwmDataError(
            f"--hand-detector vitpose gives 2D hand keypoints only (no metric 3D), which the "
            f"'{backend}' hands need: use it with --hands hamer, or --hand-detector mediapipe"
        )


def detector_from(options: HandEstimationOptions) -> HandDetector | None:
    """The detector `--hand-detector` names (None: the backend's MediaPipe)."""
    if options.hand_detector == "mediapipe":
        return None
    from dwm_data.hands.vitpose import VitPoseHands

    return VitPoseHands(options.hamer_dir, options.vitpose, options.detector_dir, options.device)


def backend_from(options: HandEstimationOptions) -> HandBackend:
    opts = options
    check_detector_pair(opts.hand_detector, chosen_backend(opts))
    return make_backend(
        opts.backend,
        opts.mano_dir,
        opts.hamer_dir,
        opts.hamer_checkpoint,
        opts.device,
        detector_from(opts),
    )


@dataclass(frozen=True)
class Estimate:
    track: HandTrack
    intrinsics: Intrinsics  # the camera `track` is expressed in
    cleanup: CleanupReport


def landmark_track(frames: np.ndarray, detector: HandDetector, intrinsics: Intrinsics) -> HandTrack:
    """A detector's hands as a track: exact pixels, MediaPipe's metric landmarks placed in the
    camera (NaN for a detector without them)."""
    track = HandTrack.empty(len(frames))
    for index, detections in enumerate(detector.detect(frames)):
        for det in detections:
            track.valid[index, det.side] = True
            track.scores[index, det.side] = det.score
            track.keypoints_px[index, det.side] = det.pixels
            track.keypoints_cam[index, det.side] = lift_to_camera(det.world, det.pixels, intrinsics)
    return track


def in_camera(track: HandTrack, intrinsics: Intrinsics) -> HandTrack:
    """The track's hands in another camera with the same pixels (the one a reconstruction
    recovered instead of the one assumed): each hand keeps its metric shape and moves to
    project onto its pixels, as `landmark_track` placed it."""
    placed = track.keypoints_cam.copy()
    for frame, side in zip(*np.nonzero(track.valid), strict=True):
        shape = placed[frame, side]
        pixels = track.keypoints_px[frame, side]
        placed[frame, side] = lift_to_camera(shape - shape.mean(axis=0), pixels, intrinsics)
    return replace(track, keypoints_cam=placed)


def estimate_hands(
    backend: HandBackend,
    frames: np.ndarray,
    assumed: Intrinsics,
    max_gap: int = 2,
    landmarks: HandTrack | None = None,
    follow: bool | None = None,
) -> Estimate:
    """Landmarks -> temporal clean-up -> lost hands followed by optical flow -> the backend's
    refinement, for one clip. `landmarks` replaces MediaPipe when the hands are already known
    (a capture rig, an earlier run); those are not followed unless `follow` says so, because a
    hand missing from a known track is an absent one, not a lost one."""
    if follow is None:
        follow = landmarks is None
    if landmarks is None:
        landmarks = landmark_track(frames, backend.detector, assumed)
    landmarks, report = clean_and_follow(frames, landmarks, assumed, max_gap, follow)
    intrinsics = backend.camera(assumed)
    return Estimate(backend.refine(frames, landmarks, intrinsics), intrinsics, report)


def clean_and_follow(
    frames: np.ndarray,
    landmarks: HandTrack,
    intrinsics: Intrinsics,
    max_gap: int = 2,
    follow: bool = True,
) -> tuple[HandTrack, CleanupReport]:
    """A landmark track cleaned up over time and, with `follow`, its lost hands followed by
    optical flow: where the hands are, before any backend refines them (also what build-ego
    masks out of its cameras and its static scene)."""
    track, report = clean_track(landmarks, max_gap=max_gap)
    if follow:
        report = replace(report, followed=follow_lost_hands(frames, track, intrinsics))
    return track, report
