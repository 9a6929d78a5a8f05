"""Fit MANO to 2D landmarks: meshes for the hand video without HaMeR.

Per side, one shape (the same person through the clip) and per-frame pose and translation are
optimised together so the 21 MANO keypoints project onto the detected landmarks. A weak term
pulls the root-relative 3D keypoints towards the detector's metric estimate (depth and scale are
ambiguous from 2D alone), priors keep pose and shape small, and a smoothness term ties
neighbouring frames. Initialisation aligns the rest-pose palm to the detected palm (Kabsch), so
the optimiser starts facing the right way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.hands.mano import ManoHands
from dwm_data.hands.track import SIDES, HandTrack

PALM = (0, 5, 9, 13, 17)  # wrist and the four finger bases (OpenPose order)


@dataclass(frozen=True)
class FitSettings:
    iterations: int = 150
    learning_rate: float = 0.05
    weight_3d: float = 100.0  # per m^2, relative to px^2 normalised by hand size
    weight_pose: float = 1e-3
    weight_shape: float = 1e-2
    weight_smooth: float = 1.0


def fit_mano(
    track: HandTrack,
    hands: ManoHands,
    intrinsics: Intrinsics,
    settings: FitSettings = FitSettings(),
) -> HandTrack:
    """The track with MANO parameters, vertices and MANO keypoints for every valid hand."""
    import torch

    threads = torch.get_num_threads()
    # The tensors are tiny: extra threads only fight over the cores (measured 7x slower on a
    # busy 2-core machine), so the fit runs on one.
    torch.set_num_threads(1)
    try:
        return _fit(track, hands, intrinsics, settings)
    finally:
        torch.set_num_threads(threads)


def _fit(
    track: HandTrack, hands: ManoHands, intrinsics: Intrinsics, settings: FitSettings
) -> HandTrack:
    frames = track.frames
    out = replace(
        track,
        keypoints_cam=track.keypoints_cam.copy(),
        keypoints_px=track.keypoints_px.copy(),
        vertices=np.full((frames, 2, 778, 3), np.nan, np.float32),
        mano={
            "global_orient": np.full((frames, 2, 3), np.nan, np.float32),
            "hand_pose": np.full((frames, 2, 45), np.nan, np.float32),
            "betas": np.full((frames, 2, 10), np.nan, np.float32),
            "transl": np.full((frames, 2, 3), np.nan, np.float32),
        },
    )
    for side_index, side in enumerate(SIDES):
        index = np.nonzero(track.valid[:, side_index])[0]
        if len(index) == 0:
            continue
        result = _fit_side(
            hands,
            side,
            track.keypoints_px[index, side_index],
            track.keypoints_cam[index, side_index],
            index,
            intrinsics,
            settings,
        )
        for name, value in result.items():
            target = out.mano.get(name)
            if target is not None:
                target[index, side_index] = value
        out.vertices[index, side_index] = result["vertices"]
        out.keypoints_cam[index, side_index] = result["keypoints"]
        out.keypoints_px[index, side_index] = result["pixels"]
    return out


def _fit_side(
    hands: ManoHands,
    side: str,
    pixels: np.ndarray,
    cam: np.ndarray,
    frame_index: np.ndarray,
    intrinsics: Intrinsics,
    settings: FitSettings,
) -> dict[str, np.ndarray]:
    import torch

    n = len(pixels)
    zeros = torch.zeros
    rest = hands(side, zeros(1, 3), zeros(1, 45), zeros(1, 10), zeros(1, 3)).keypoints[0].numpy()
    orient0, transl0 = _initial_pose(rest, cam)
    global_orient = torch.tensor(orient0, dtype=torch.float32, requires_grad=True)
    transl = torch.tensor(transl0, dtype=torch.float32, requires_grad=True)
    hand_pose = zeros(n, 45, requires_grad=True)
    betas = zeros(1, 10, requires_grad=True)
    target_px = torch.tensor(pixels, dtype=torch.float32)
    target_rel = torch.tensor(cam - cam[:, :1], dtype=torch.float32)
    size = torch.tensor(np.linalg.norm(np.ptp(pixels, axis=1), axis=1), dtype=torch.float32)
    size = size.clamp(min=8.0)[:, None]
    k = torch.tensor([intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy])
    # Smoothness only between frames that are neighbours in the clip, not across gaps.
    neighbours = torch.tensor(np.nonzero(np.diff(frame_index) == 1)[0])
    optimiser = torch.optim.Adam([global_orient, transl, hand_pose, betas], settings.learning_rate)

    def evaluate():
        out = hands(side, global_orient, hand_pose, betas.expand(n, -1), transl)
        points = out.keypoints
        z = points[..., 2].clamp(min=1e-3)
        px = torch.stack([k[0] * points[..., 0] / z + k[2], k[1] * points[..., 1] / z + k[3]], -1)
        return out, px

    for _ in range(settings.iterations):
        optimiser.zero_grad()
        out, px = evaluate()
        loss = (((px - target_px).norm(dim=-1) / size) ** 2).mean() * 100
        rel = out.keypoints - out.keypoints[:, :1]
        loss = loss + settings.weight_3d * ((rel - target_rel) ** 2).sum(-1).mean()
        loss = loss + settings.weight_pose * (hand_pose**2).sum(-1).mean()
        loss = loss + settings.weight_shape * (betas**2).sum()
        if len(neighbours):
            motion = out.keypoints[neighbours + 1] - out.keypoints[neighbours]
            loss = loss + settings.weight_smooth * (motion**2).sum(-1).mean() * 100
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        out, px = evaluate()
    return {
        "global_orient": global_orient.detach().numpy(),
        "hand_pose": hand_pose.detach().numpy(),
        "betas": betas.detach().expand(n, -1).numpy(),
        "transl": transl.detach().numpy(),
        "vertices": out.vertices.numpy(),
        "keypoints": out.keypoints.numpy(),
        "pixels": px.numpy(),
    }


def _initial_pose(rest: np.ndarray, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the rotation (axis-angle) taking the rest palm onto the detected palm
    (Kabsch), and the translation that puts the wrist on the detected wrist."""
    from scipy.spatial.transform import Rotation

    source = rest[list(PALM)] - rest[0]
    orients, transls = [], []
    for points in cam:
        target = points[list(PALM)] - points[0]
        u, _, vt = np.linalg.svd(source.T @ target)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
        orients.append(Rotation.from_matrix(rotation).as_rotvec())
        # MANO applies global_orient about joint 0 (the rest wrist), then adds transl.
        transls.append(points[0] - rest[0])
    return np.array(orients), np.array(transls)
