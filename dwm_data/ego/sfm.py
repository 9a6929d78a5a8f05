"""The clip's cameras from its own frames: COLMAP's structure from motion (pycolmap, CPU).

SIFT features outside the masked hands and arms (the actor moves with the camera and would pull
the reconstruction towards a head-fixed world), sequential matching (the frames are a video),
incremental mapping with one shared camera, started from a wide initial pair and, when that
leaves frames unposed, from narrower ones (`ego.sfm.init_retry_angles_deg`). A reconstruction
that still leaves any frame of the clip unposed, or splits into several models, is refused: a
clip needs a camera for every frame, and a guessed one would be a silent error in the static
video.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.ego.options import SfmSettings
from dwm_data.errors import UnitError
from dwm_data.extras import require


@dataclass(frozen=True)
class Cameras:
    """Per-frame OpenCV camera-to-world poses and the pinhole camera the frames are seen by."""

    intrinsics: Intrinsics
    cam_to_world: np.ndarray  # (F, 4, 4)
    points: np.ndarray  # (P, 3) scene points, world frame (may be empty for given poses)
    colors: np.ndarray  # (P, 3) uint8
    report: dict  # provenance: origin, registered frames, reprojection error, seconds


def reconstruct(
    frames: np.ndarray, keep: np.ndarray | None, workdir: Path, settings: SfmSettings
) -> Cameras:
    """Poses of every frame (F, H, W, 3 uint8); `keep` (F, H, W bool) is where features may be
    taken (False on hands and arms). Raises `UnitError("cameras", ...)` when it fails.

    pycolmap runs in a fresh process of its own: in a process that had already run other native
    libraries (the test suite, after Blender, torch, projectaria and friends) its image reader
    corrupted the heap and hung, and a build-ego worker holds MediaPipe and torch as well."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    require("pycolmap", "ego")
    _write_inputs(frames, keep, workdir / "images", workdir / "masks", settings.equalise)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        job = pool.submit(
            _reconstruct, len(frames), max(frames.shape[1:3]), keep is not None, workdir, settings
        )
        try:
            return job.result()
        except BrokenProcessPool as exc:
            raise UnitError(
                "cameras", "structure from motion crashed (pycolmap's process died)"
            ) from exc


def _reconstruct(
    count: int, max_size: int, masked: bool, workdir: Path, settings: SfmSettings
) -> Cameras:
    pycolmap = require("pycolmap", "ego")
    started = time.time()
    images, masks, database = workdir / "images", workdir / "masks", workdir / "database.db"
    database.unlink(missing_ok=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = settings.camera_model
    if masked:
        reader.mask_path = str(masks)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = settings.threads
    extraction.max_image_size = max_size
    extraction.sift.max_num_features = settings.max_features
    extraction.sift.peak_threshold = settings.peak_threshold
    pycolmap.extract_features(
        database,
        images,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    features = _feature_counts(pycolmap, database)
    if np.median(features) < settings.min_features:
        raise UnitError(
            "cameras",
            f"too few image features for structure from motion (median {np.median(features):.0f} "
            f"per frame, need {settings.min_features}): the video may be too dark, blurred or "
            "featureless",
        )
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = settings.threads
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = settings.overlap
    pycolmap.match_sequential(
        database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
    )
    failure = None
    for angle in (settings.init_min_angle_deg, *settings.init_retry_angles_deg):
        models = _map(pycolmap, database, images, workdir / f"sparse-{angle:g}", settings, angle)
        if not models:
            failure = UnitError(
                "cameras",
                "structure from motion found no reconstruction (no frame pair with enough "
                "parallax: too little camera translation, or too few matches)",
            )
            continue
        model = max(models.values(), key=lambda m: m.num_reg_images())
        try:
            cameras = _cameras(model, count, features, started)
        except UnitError as exc:
            failure = exc
            continue
        cameras.report["init_min_angle_deg"] = angle
        return cameras
    raise failure


def _map(pycolmap, database: Path, images: Path, out: Path, settings: SfmSettings, angle: float):
    """Incremental mapping from an initial pair of at least `angle` degrees of triangulation.
    A wide angle makes the best-conditioned start, but on a slow or masked clip the only pairs
    that wide may be far apart and share too few points to register the rest (measured: the
    official clip 00017 stalled at 3 of 49 frames at 16 degrees and registered all at 12)."""
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = settings.threads
    mapping.random_seed = 0
    mapping.multiple_models = False
    mapping.min_model_size = 3
    mapping.mapper.abs_pose_min_num_inliers = settings.min_inliers
    mapping.mapper.init_min_tri_angle = angle
    out.mkdir(parents=True, exist_ok=True)
    return pycolmap.incremental_mapping(database, images, out, mapping)


def _write_inputs(
    frames: np.ndarray, keep: np.ndarray | None, images: Path, masks: Path, equalise: bool
) -> None:
    """Frames as lossless PNGs (contrast-equalised if asked) and, per frame, COLMAP's mask
    (`<image name>.png`, 0 = ignore)."""
    cv2 = require("cv2", "ego")
    images.mkdir(parents=True, exist_ok=True)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    for index, frame in enumerate(frames):
        bgr = np.ascontiguousarray(frame[..., ::-1])
        if equalise:
            lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
            lab[..., 0] = clahe.apply(lab[..., 0])
            bgr = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
        cv2.imwrite(str(images / _name(index)), bgr)
    if keep is None:
        return
    masks.mkdir(parents=True, exist_ok=True)
    for index, mask in enumerate(keep):
        cv2.imwrite(str(masks / f"{_name(index)}.png"), mask.astype(np.uint8) * 255)


def _name(index: int) -> str:
    return f"{index:05d}.png"


def _feature_counts(pycolmap, database: Path) -> np.ndarray:
    db = pycolmap.Database.open(str(database))
    try:
        return np.array(
            [db.num_keypoints_for_image(image.image_id) for image in db.read_all_images()]
        )
    finally:
        db.close()


def _cameras(model, count: int, features: np.ndarray, started: float) -> Cameras:
    by_name = {image.name: image for image in model.images.values() if image.has_pose}
    missing = [i for i in range(count) if _name(i) not in by_name]
    if missing:
        raise UnitError(
            "cameras",
            f"partial reconstruction: {count - len(missing)} of {count} frames registered "
            f"(first unposed frame {missing[0]})",
        )
    poses = np.stack(
        [np.linalg.inv(rigid_matrix(by_name[_name(i)].cam_from_world())) for i in range(count)]
    )
    intrinsics = colmap_intrinsics(next(iter(model.cameras.values())))
    points = model.points3D.values()
    report = {
        "origin": "sfm",
        "method": "colmap-incremental (pycolmap, SIFT, sequential matching)",
        "registered_frames": count,
        "frames": count,
        "points": len(model.points3D),
        "reprojection_error_px": round(float(model.compute_mean_reprojection_error()), 4),
        "median_features": int(np.median(features)),
        "seconds": round(time.time() - started, 2),
    }
    return Cameras(
        intrinsics,
        poses,
        np.array([p.xyz for p in points], np.float64).reshape(-1, 3),
        np.array([p.color for p in points], np.uint8).reshape(-1, 3),
        report,
    )


def rigid_matrix(rigid) -> np.ndarray:
    """A pycolmap `Rigid3d` as a 4x4 matrix."""
    out = np.eye(4)
    out[:3] = rigid.matrix()
    return out


def colmap_intrinsics(camera) -> Intrinsics:
    """A COLMAP pinhole camera in our convention: COLMAP's pixel centres are at +0.5."""
    if camera.model_name not in ("SIMPLE_PINHOLE", "PINHOLE"):
        raise UnitError("cameras", f"unsupported camera model {camera.model_name} (need a pinhole)")
    return Intrinsics(
        camera.focal_length_x,
        camera.focal_length_y,
        camera.principal_point_x - 0.5,
        camera.principal_point_y - 0.5,
        camera.width,
        camera.height,
    )


MIN_CORNERS = 8  # fewer corners than this in the first frame: no motion can be measured


def camera_motion(frames: np.ndarray, keep: np.ndarray | None) -> float:
    """Median displacement of corners tracked from the first to the last frame (outside the
    actor), as a share of the frame width: near zero when the camera did not move. A frame with
    nothing to follow (black, flat) is a recorded failure, not a still camera."""
    cv2 = require("cv2", "ego")
    first = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)
    last = cv2.cvtColor(frames[-1], cv2.COLOR_RGB2GRAY)
    where = None if keep is None else (keep[0] & keep[-1]).astype(np.uint8)
    corners = cv2.goodFeaturesToTrack(first, 400, 0.01, 5, mask=where)
    if corners is None or len(corners) < MIN_CORNERS:
        raise UnitError(
            "cameras",
            f"{0 if corners is None else len(corners)} corners to follow in the first frame "
            "outside the actor: the video may be too dark, blurred or featureless",
        )
    moved, status, _ = cv2.calcOpticalFlowPyrLK(first, last, corners, None, winSize=(21, 21))
    ok = status.ravel() == 1
    if not ok.any():
        return 1.0  # nothing could be followed: the view changed completely
    shift = np.linalg.norm((moved - corners).reshape(-1, 2)[ok], axis=1)
    return float(np.median(shift) / frames.shape[2])
