"""Hand estimation backends behind one interface, and the one pipeline that runs them.

Every backend starts from MediaPipe landmarks (boxes and sides, as DWM's fork does), the
landmark track is cleaned up over time, and a backend may then refine it into meshes (HaMeR's
network, or a MANO fit). Backends check their files when they are made, so a run with a missing
model fails at start with one line instead of failing every clip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.hands.cleanup import CleanupReport, clean_track
from dwm_data.hands.landmarks import MediaPipeHands, lift_to_camera
from dwm_data.hands.track import HandTrack

BACKENDS = ("mediapipe", "hamer", "mano-fit")


class HandBackend(ABC):
    name: ClassVar[str]
    has_meshes: ClassVar[bool]

    def __init__(self) -> None:
        self.detector = MediaPipeHands()

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

    def __init__(self, mano_dir: Path | str | None):
        from dwm_data.hands.mano import ManoHands

        self.hands = ManoHands(mano_dir)  # fails here, at start, when the files are missing
        super().__init__()

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
        self, hamer_dir: Path | str | None, checkpoint: Path | str | None, device: str = "cpu"
    ):
        from dwm_data.hands.hamer import hamer_files, load_hamer
        from dwm_data.hands.mano import read_mano_pickle

        files = hamer_files(hamer_dir, checkpoint)
        right = np.asarray(read_mano_pickle(files["mano_right"])["f"], np.int64)
        # HaMeR mirrors a right-hand prediction for the left hand; mirrored, the faces turn
        # inside out unless their winding is reversed too.
        self._faces = (right[:, [0, 2, 1]], right)
        self.model = load_hamer(hamer_dir, checkpoint, device)
        super().__init__()

    def camera(self, assumed: Intrinsics) -> Intrinsics:
        from dwm_data.hands.hamer import hamer_intrinsics

        return hamer_intrinsics(assumed.width, assumed.height)

    @property
    def faces(self) -> tuple[np.ndarray, np.ndarray]:
        return self._faces

    def refine(self, frames: np.ndarray, landmarks: HandTrack, intrinsics: Intrinsics) -> HandTrack:
        from dwm_data.hands.hamer import estimate_with_hamer

        return estimate_with_hamer(self.model, frames, landmarks)


def make_backend(
    name: str,
    mano_dir: Path | str | None = None,
    hamer_dir: Path | str | None = None,
    hamer_checkpoint: Path | str | None = None,
    device: str = "cpu",
) -> HandBackend:
    if name == "mediapipe":
        return MediaPipeBackend()
    if name == "mano-fit":
        return ManoFitBackend(mano_dir)
    if name == "hamer":
        return HamerBackend(hamer_dir, hamer_checkpoint, device)
    raise ValueError(f"unknown hand backend '{name}' (known: {', '.join(BACKENDS)})")


@dataclass(frozen=True)
class Estimate:
    track: HandTrack
    intrinsics: Intrinsics  # the camera `track` is expressed in
    cleanup: CleanupReport


def landmark_track(
    frames: np.ndarray, detector: MediaPipeHands, intrinsics: Intrinsics
) -> HandTrack:
    """MediaPipe's hands as a track: exact pixels, metric landmarks placed in the camera."""
    track = HandTrack.empty(len(frames))
    for index, detections in enumerate(detector.detect(frames)):
        for det in detections:
            track.valid[index, det.side] = True
            track.scores[index, det.side] = det.score
            track.keypoints_px[index, det.side] = det.pixels
            track.keypoints_cam[index, det.side] = lift_to_camera(det.world, det.pixels, intrinsics)
    return track


def estimate_hands(
    backend: HandBackend,
    frames: np.ndarray,
    assumed: Intrinsics,
    max_gap: int = 2,
    landmarks: HandTrack | None = None,
) -> Estimate:
    """Landmarks -> temporal clean-up -> the backend's refinement, for one clip. `landmarks`
    replaces MediaPipe when the hands are already known (a capture rig, an earlier run)."""
    if landmarks is None:
        landmarks = landmark_track(frames, backend.detector, assumed)
    landmarks, report = clean_track(landmarks, max_gap=max_gap)
    intrinsics = backend.camera(assumed)
    return Estimate(backend.refine(frames, landmarks, intrinsics), intrinsics, report)
