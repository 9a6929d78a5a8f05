"""The static scene as a point cloud lifted from the user's depth maps (EgoSim's static
condition), drawn along the clip's cameras as `points.mp4`.

`--depth DIR` holds, per video, `<stem>.depth.npz`: `depth` (N, H, W), any consistent unit, or
`disparity` (N, H, W), inverse depth as Depth Anything and MiDaS give it; 0, NaN and inf are
unknown. An optional `frames` (N,) int names the source frame of each map (default 0..N-1, every
frame). Maps of any size are resized (nearest, so unknown pixels stay unknown) to the working
frames; they need the aspect of the video.

A monocular depth is known only up to scale (a disparity up to scale and shift), and so is a
structure-from-motion world: each map is fitted to the reconstruction's points seen in its
frame (outside the actor), by the median of their depth ratios or by least squares on inverse
depth with outliers rejected. Cameras given with `--poses` come without points: depth is then
taken as metric in the poses' unit. The points are lifted from the frames the splat learns from
(the scene as it was before the interaction), outside the actor masks, every `points_stride`-th
pixel, and drawn by every camera with a z-buffer: the nearest point wins a pixel, each point a
square as large as the pixels it stands for at its depth (or of a fixed size), black where
nothing lands.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwm_data.cameras import Intrinsics, project, world_to_camera
from dwm_data.ego.options import EgoSection
from dwm_data.ego.sfm import Cameras
from dwm_data.ego.static import training_frames
from dwm_data.errors import UnitError
from dwm_data.extras import require

DEPTH_SUFFIX = ".depth.npz"
MIN_PAIRS = 10  # SfM points a map is fitted to, at least: fewer leave a scale to chance
OUTLIER_MADS = 3.0  # a disparity fit drops points this many robust deviations off it
# no point is drawn larger than this share of the frame's width (or 8 pixels, if more): a
# point right before a camera would otherwise cover the view
MAX_SIDE_SHARE = 0.05


@dataclass(frozen=True)
class PointCloud:
    xyz: np.ndarray  # (P, 3) world
    colors: np.ndarray  # (P, 3) uint8
    footprint: np.ndarray  # (P,) world size of the block of pixels each point stands for


@dataclass(frozen=True)
class Fit:
    """One map against the reconstruction: aligned = scale * map (+ shift, on inverse depth)."""

    scale: float
    shift: float
    pairs: int  # SfM points it was fitted to
    residual: float  # median |aligned - SfM depth| / SfM depth over those points
    ordered: bool  # the map orders the points by depth as the reconstruction does


def points_video(
    folder: Path,
    stem: str,
    source_frames: list[int],
    frames: np.ndarray,
    keep: np.ndarray,
    cameras: Cameras,
    content: Intrinsics,
    knobs: EgoSection,
) -> tuple[np.ndarray, dict]:
    """(F, H, W, 3) uint8 at the content size, and its provenance for json. `frames` and `keep`
    (False on the actor) are the clip's working frames, which `cameras.intrinsics` sees."""
    started = time.time()
    pool, scene_state = training_frames(~keep.all(axis=(1, 2)), knobs.min_static_frames)
    lifted = _spread(pool, knobs.points_frames)
    file = folder / f"{stem}{DEPTH_SUFFIX}"
    height, width = frames.shape[1:3]
    kind, maps = read_depth(file, [source_frames[i] for i in lifted], width, height)
    if len(cameras.points):
        depth, lifted, alignment = _align(
            file.name, kind, maps, lifted, cameras, keep, knobs.points_max_residual
        )
    elif kind == "disparity":
        raise UnitError(
            "depth",
            f"{file.name} holds disparity, known only up to scale and shift, and the cameras "
            "(--poses) come without scene points to fit it to: give metric depth in the poses' "
            "unit as 'depth'",
        )
    else:
        depth = maps
        alignment = {"method": "none: depth taken as metric in the poses' unit (no SfM points)"}
    intr, poses = cameras.intrinsics, cameras.cam_to_world[lifted]
    cloud = lift(depth, frames[lifted], keep[lifted], intr, poses, knobs.points_stride)
    if not len(cloud.xyz):
        raise UnitError("depth", f"{file.name}: no known depth outside the actor to lift")
    video = render_points(cloud, content, cameras.cam_to_world, knobs.points_radius_px)
    report = {
        "method": "point cloud from depth, z-buffered",
        "file": file.name,
        "kind": kind,
        "alignment": alignment,
        "scene_state": scene_state,
        "lifted_frames": lifted,
        "points": len(cloud.xyz),
        "stride": knobs.points_stride,
        "point_size": f"{2 * knobs.points_radius_px + 1} px"
        if knobs.points_radius_px
        else "the lifted pixels' footprint",
        "coverage": round(float(video.any(axis=-1).mean()), 4),
        "seconds": round(time.time() - started, 1),
    }
    return video, report


def read_depth(file: Path, wanted: list[int], width: int, height: int) -> tuple[str, np.ndarray]:
    """The kind ("depth" or "disparity") and the maps of source frames `wanted`, resized to
    width x height (nearest), float64 with NaN where unknown."""
    cv2 = require("cv2", "ego")
    if not file.is_file():
        raise UnitError("depth", f"--depth: no {file.name} in {file.parent}")
    try:
        data = np.load(file, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array")
        with data:
            kinds = [k for k in ("depth", "disparity") if k in data.files]
            if len(kinds) != 1:
                raise UnitError(
                    "depth",
                    f"{file.name} needs one array 'depth' or 'disparity', has "
                    f"{', '.join(data.files) or 'none'}",
                )
            kind, maps = kinds[0], data[kinds[0]]
            given = data["frames"] if "frames" in data.files else np.arange(len(maps))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UnitError("depth", f"{file.name} is not an .npz archive ({exc})") from exc
    real = np.issubdtype(maps.dtype, np.integer) or maps.dtype.kind == "f"
    if maps.ndim != 3 or not real or 0 in maps.shape[1:]:
        raise UnitError(
            "depth",
            f"{file.name}: '{kind}' must be real numbers (N, H, W), got {maps.dtype} {maps.shape}",
        )
    if given.shape != (len(maps),) or not np.issubdtype(given.dtype, np.integer):
        raise UnitError(
            "depth",
            f"{file.name}: 'frames' must be (N,) integers for its {len(maps)} maps, got "
            f"{given.dtype} {given.shape}",
        )
    index = {int(f): i for i, f in enumerate(given)}
    missing = [f for f in wanted if f not in index]
    if missing:
        raise UnitError(
            "depth",
            f"{file.name} has no map for source frame {missing[0]} ({len(maps)} maps"
            + (f", frames {given.min()}..{given.max()})" if len(given) else ")"),
        )
    map_h, map_w = maps.shape[1:]
    if abs(map_w / map_h - width / height) > 0.01:
        raise UnitError(
            "depth",
            f"{file.name}: maps are {map_w}x{map_h}, the video's aspect is {width}x{height}",
        )
    out = np.stack(
        [
            cv2.resize(
                maps[index[f]].astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST
            )
            for f in wanted
        ]
    ).astype(np.float64)
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return kind, out


def _align(
    name: str,
    kind: str,
    maps: np.ndarray,
    lifted: list[int],
    cameras: Cameras,
    keep: np.ndarray,
    limit: float,
) -> tuple[np.ndarray, list[int], dict]:
    """The maps that fit the reconstruction, aligned to it, their frames and the figures."""
    fits = [
        fit_map(kind, raw, cameras.points, cameras.cam_to_world[i], cameras.intrinsics, keep[i])
        for raw, i in zip(maps, lifted, strict=True)
    ]
    good = [k for k, f in enumerate(fits) if f is not None and f.ordered and f.residual <= limit]
    if not good:
        raise UnitError("depth", _unaligned(name, kind, fits, limit))
    depth = np.stack([aligned(kind, maps[k], fits[k].scale, fits[k].shift) for k in good])
    report = _alignment_report(kind, [fits[k] for k in good], len(fits))
    return depth, [lifted[k] for k in good], report


def fit_map(
    kind: str, raw: np.ndarray, points: np.ndarray, pose: np.ndarray, intr: Intrinsics, keep
) -> Fit | None:
    """One map fitted to the SfM points seen in its frame outside the actor (None: too few).
    Whether it orders them as the reconstruction does (a depth grows with theirs, a disparity
    falls) is told apart from how well it fits: over a narrow range of depths, inverse depth
    saved as depth still fits a scale loosely."""
    sfm, value = _observed(raw, points, pose, intr, keep)
    if len(sfm) < MIN_PAIRS:
        return None
    order = _rank_correlation(value, sfm)
    if kind == "depth":
        scale, shift = float(np.median(sfm / value)), 0.0
    else:
        scale, shift = _fit_inverse(value, 1 / sfm)
    ordered = bool(order > 0 if kind == "depth" else order < 0 and scale > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        residual = np.abs(aligned(kind, value, scale, shift) - sfm) / sfm
    residual[~np.isfinite(residual)] = np.inf  # an inverse depth fitted below 0: no depth
    return Fit(scale, shift, len(sfm), float(np.median(residual)), ordered)


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's: the correlation of the ranks (robust to any monotone scale)."""
    ranks = [np.argsort(np.argsort(x)).astype(float) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def aligned(kind: str, raw: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Depth in the reconstruction's unit (NaN where the map knows none)."""
    if kind == "depth":
        return raw * scale
    inverse = raw * scale + shift
    with np.errstate(divide="ignore"):
        return np.where(inverse > 0, 1 / inverse, np.nan)


def _observed(raw, points, pose, intr, keep) -> tuple[np.ndarray, np.ndarray]:
    """The SfM points' depths in this camera and the map's values at their pixels."""
    cam = world_to_camera(points, pose)
    uv = np.round(project(cam, intr))
    height, width = raw.shape
    ok = np.isfinite(uv).all(axis=1)
    ok[ok] = (uv[ok, 0] >= 0) & (uv[ok, 0] < width) & (uv[ok, 1] >= 0) & (uv[ok, 1] < height)
    u, v = uv[ok, 0].astype(int), uv[ok, 1].astype(int)
    value, sfm = raw[v, u], cam[ok, 2]
    seen = keep[v, u] & np.isfinite(value)
    return sfm[seen], value[seen]


def _fit_inverse(value: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """scale, shift of target ~ scale * value + shift: started from the medians and median
    deviations (a plain least squares follows the strays: an SfM point badly triangulated near
    the camera has a huge inverse depth), then least squares on the points within OUTLIER_MADS
    robust deviations of the fit so far (SfM points hidden in this frame, the depth model's
    errors at edges), until they no longer change."""
    centre_v, centre_t = float(np.median(value)), float(np.median(target))
    spread = float(np.median(np.abs(value - centre_v)))
    scale = float(np.median(np.abs(target - centre_t))) / max(spread, 1e-12)
    shift = centre_t - scale * centre_v
    floor = 1e-9 * abs(centre_t)
    inliers = None
    for _ in range(20):
        residual = np.abs(scale * value + shift - target)
        kept = residual <= max(OUTLIER_MADS * 1.4826 * float(np.median(residual)), floor)
        if kept.sum() < MIN_PAIRS or (inliers is not None and (kept == inliers).all()):
            break
        inliers = kept
        design = np.stack([value[kept], np.ones(int(kept.sum()))], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, target[kept], rcond=None)
    return float(scale), float(shift)


def _unaligned(name: str, kind: str, fits: list[Fit | None], limit: float) -> str:
    fitted = [f for f in fits if f is not None]
    swapped = "disparity saved as depth" if kind == "depth" else "depth saved as disparity"
    if not fitted:
        return (
            f"{name}: no map of the {len(fits)} lifted frames can be fitted to the "
            f"reconstruction: each needs {MIN_PAIRS} SfM points in view outside the actor"
        )
    ordered = [f for f in fitted if f.ordered]
    if not ordered:
        return (
            f"{name}: its {kind} {'falls' if kind == 'depth' else 'grows'} where the SfM "
            f"points' depth grows, in all {len(fitted)} maps that see them: {swapped}?"
        )
    best = min(f.residual for f in ordered)
    return (
        f"{name}: its {kind} does not fit the reconstruction (median relative residual at best "
        f"{best:.2f}, ego.points_max_residual={limit:g}): another video's maps, or {swapped}?"
    )


def _alignment_report(kind: str, fits: list[Fit], total: int) -> dict:
    report = {
        "method": "per map, the median ratio of SfM depth to map depth"
        if kind == "depth"
        else "per map, least squares of SfM inverse depth on disparity, outliers rejected",
        "frames_aligned": len(fits),
        "frames": total,
        "median_relative_residual": round(float(np.median([f.residual for f in fits])), 4),
        "median_sfm_points": int(np.median([f.pairs for f in fits])),
        "scale": float(np.median([f.scale for f in fits])),
    }
    if kind == "disparity":
        report["shift"] = float(np.median([f.shift for f in fits]))
    return report


def lift(
    depth: np.ndarray,
    frames: np.ndarray,
    keep: np.ndarray,
    intr: Intrinsics,
    cam_to_world: np.ndarray,
    stride: int,
) -> PointCloud:
    """One point per `stride` x `stride` block of each frame, at the block's centre with the
    depth there, where it is known and outside the actor, in the world; coloured with the
    block's mean (the point stands for all its pixels)."""
    count, height, width = depth.shape
    rows, cols = height // stride, width // stride
    centre_v = np.arange(rows) * stride + (stride - 1) / 2
    centre_u = np.arange(cols) * stride + (stride - 1) / 2
    v, u = np.meshgrid(centre_v, centre_u, indexing="ij")
    at_v, at_u = (np.floor(c + 0.5).astype(int) for c in (v, u))  # the pixel at the centre
    z = depth[:, at_v, at_u]  # (F, rows, cols)
    ok = keep[:, at_v, at_u] & np.isfinite(z)
    blocks = frames[:, : rows * stride, : cols * stride].reshape(
        count, rows, stride, cols, stride, 3
    )
    colors = (blocks.mean(axis=(2, 4)) + 0.5).astype(np.uint8)[ok]
    which = np.nonzero(ok)[0]
    z, uu, vv = z[ok], np.broadcast_to(u, ok.shape)[ok], np.broadcast_to(v, ok.shape)[ok]
    cam = np.stack([(uu - intr.cx) / intr.fx * z, (vv - intr.cy) / intr.fy * z, z], axis=1)
    rotation, shift = cam_to_world[which, :3, :3], cam_to_world[which, :3, 3]
    xyz = np.einsum("nij,nj->ni", rotation, cam) + shift
    focal = (intr.fx + intr.fy) / 2
    return PointCloud(xyz, colors, stride * z / focal)


def render_points(
    cloud: PointCloud, intrinsics: Intrinsics, cam_to_world: np.ndarray, radius_px: int
) -> np.ndarray:
    """(F, H, W, 3) uint8: the cloud seen by each camera, black where no point lands."""
    height, width = intrinsics.height, intrinsics.width
    max_side = max(8, int(MAX_SIDE_SHARE * width))
    out = np.zeros((len(cam_to_world), height * width, 3), np.uint8)
    focal = (intrinsics.fx + intrinsics.fy) / 2
    for index, pose in enumerate(cam_to_world):
        cam = world_to_camera(cloud.xyz, pose)
        front = cam[:, 2] > 1e-6
        z, foot, colors = cam[front, 2], cloud.footprint[front], cloud.colors[front]
        u = intrinsics.fx * cam[front, 0] / z + intrinsics.cx
        v = intrinsics.fy * cam[front, 1] / z + intrinsics.cy
        if radius_px:
            side = np.full(len(z), 2 * radius_px + 1)
        else:
            # the pixels it stood for, rounded up (less a rounding error: a point seen from
            # where it was lifted covers exactly its own pixels)
            side = np.clip(np.ceil(foot * focal / z - 1e-6), 1, max_side).astype(np.int64)
        # a square of `side` pixels centred on the point: the pixel centres within side/2
        x0 = np.ceil(np.clip(u, -2 * width, 3 * width) - side / 2).astype(np.int64)
        y0 = np.ceil(np.clip(v, -2 * height, 3 * height) - side / 2).astype(np.int64)
        near = (x0 < width) & (x0 + side > 0) & (y0 < height) & (y0 + side > 0)
        x0, y0, side, z, colors = x0[near], y0[near], side[near], z[near], colors[near]
        counts = side * side
        owner = np.repeat(np.arange(len(side)), counts)
        local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        px = x0[owner] + local % side[owner]
        py = y0[owner] + local // side[owner]
        inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
        owner, flat = owner[inside], py[inside] * width + px[inside]
        nearest = np.full(height * width, np.inf)
        np.minimum.at(nearest, flat, z[owner])
        wins = z[owner] == nearest[flat]
        out[index, flat[wins]] = colors[owner[wins]]
    return out.reshape(len(cam_to_world), height, width, 3)


def _spread(pool: list[int], count: int) -> list[int]:
    """At most `count` frames of `pool`, evenly spread, first and last included: neighbouring
    frames see the same surfaces, so more would cost without covering more."""
    if len(pool) <= count:
        return list(pool)
    picks = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in sorted(set(picks.tolist()))]
