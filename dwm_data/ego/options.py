"""`build-ego` options and its recipe section (a light module: the CLI reads it for `--help`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dwm_data.hands.options import HandEstimationOptions
from dwm_data.options import Cli
from dwm_data.splat.config import SplatConfig


class SfmSettings(BaseModel):
    """Structure from motion (COLMAP through pycolmap) on the clip's frames."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # One shared pinhole camera: the output videos are pinhole (the splat renders pinhole);
    # a fisheye or strongly distorted video should be undistorted first.
    camera_model: Literal["SIMPLE_PINHOLE", "PINHOLE"] = "SIMPLE_PINHOLE"
    max_features: int = Field(4096, gt=0)
    # Indoor egocentric video is dark and flat: features are taken on contrast-equalised
    # frames (CLAHE on the lightness) with a third of COLMAP's SIFT contrast threshold (0.0067).
    # With 20 inliers to register a frame, all 49 frames of each official real-world clip
    # register (COLMAP's defaults register 3, 29 and 29).
    equalise: bool = True
    peak_threshold: float = Field(0.002, gt=0)
    min_features: int = Field(64, gt=0)  # median features per frame below this: too dark/flat
    overlap: int = Field(20, gt=0)  # sequential matching: each frame against the next n
    min_inliers: int = Field(
        20, gt=0
    )  # a frame registers with this many 2D-3D inliers (COLMAP: 30)
    init_min_angle_deg: float = Field(16.0, gt=0)  # the initial pair's triangulation angle
    # When the reconstruction from that start leaves frames unposed, mapping (not the features
    # or matches) is tried again from narrower starts, in this order; json records the one used.
    init_retry_angles_deg: tuple[float, ...] = (12.0, 8.0)
    threads: int = Field(1, gt=0)  # runs parallelise over worker processes


class EgoSection(BaseModel):
    """The recipe's `ego:` knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Frames are decoded at this width (at most the source's) for hand detection, structure from
    # motion, the splat and hand estimation; the outputs are then fitted to the recipe size.
    work_width: int = Field(480, gt=0)
    # Output frames with no hand before the first one with a hand (0: the window with the most
    # hand frames, wherever they start).
    lead_frames: int = Field(0, ge=0)
    hfov_deg: float = Field(70.0, gt=0, lt=180)  # assumed only when the camera did not move
    # Median feature displacement over the clip below this share of the frame width: no camera
    # motion, so no reconstruction; the static video is then one frame, the last before the
    # first hand when the video has one (marked in json).
    min_motion: float = Field(0.02, ge=0)
    hand_margin: float = Field(0.3, ge=0)  # hand masks grow the hull by this share of its size
    # The splat and the point cloud mask the actor this share of the width more than structure
    # from motion does (which needs the features beside the actor): the 0.8 hand-size arm band
    # this stands for kept the sleeves of the official clip 00039 out of its static video, and
    # cost the generated Aria capture its reconstruction when its features were masked too.
    scene_mask_grow: float = Field(0.02, ge=0, lt=0.5)
    max_gap: int = Field(2, ge=0)  # frames bridged by the hand track's temporal clean-up
    sfm: SfmSettings = SfmSettings()
    train_width: int = Field(320, gt=0)  # the splat trains at most this wide
    # The splat learns the scene before the interaction changes it: from the frames before the
    # first one with a hand when there are at least this many, else from all frames (the actor
    # and moving objects masked out either way; which one is recorded in json).
    min_static_frames: int = Field(16, gt=0)  # 2 s at 8 fps: fewer rarely see the whole path
    # Moving objects: after this share of the splat's steps, pixels whose residual against the
    # splat so far (box-blurred over transient_blur of the width) exceeds transient_factor times
    # the clip's median residual, and transient_floor, leave the loss for the remaining steps.
    transient_after: float = Field(0.4, gt=0, lt=1)
    transient_factor: float = Field(3.0, gt=1)
    transient_floor: float = Field(0.06, ge=0, le=1)
    transient_blur: float = Field(0.03, gt=0, lt=1)
    heldout_every: int = Field(6, gt=0)  # every n-th training frame is held out to score it
    render_width: int = Field(640, gt=0)  # the static video is rendered at most this wide
    max_points: int = Field(50_000, gt=0)
    # The point-cloud static video (`--depth`): every n-th pixel of at most points_frames of
    # the frames the splat learns from is lifted; each point is drawn as a square covering its
    # pixels at its depth (points_radius_px=0) or as a (2r+1)-pixel square; a map whose median
    # relative residual against the SfM points exceeds points_max_residual is not lifted.
    points_stride: int = Field(4, gt=0)
    points_frames: int = Field(8, gt=0)
    points_radius_px: int = Field(0, ge=0)
    points_max_residual: float = Field(0.3, gt=0)
    splat: SplatConfig = SplatConfig(steps=1500, refine_start=300, max_gaussians=60_000)


class EgoOptions(HandEstimationOptions):
    source: Annotated[str, Cli(argument=True, path=True)] = Field(
        description="A folder of egocentric videos (searched recursively) or a list file of "
        "video paths; optional <stem>.txt prompts beside the videos."
    )
    poses: Annotated[str | None, Cli(path=True)] = Field(
        None,
        description="A folder of your own cameras instead of structure from motion: per video "
        "<stem>.poses.npz (cam_to_world (N,4,4) OpenCV per source frame, K (3,3), width, height) "
        "or a COLMAP model <stem>/ (cameras, images; image names numbered by source frame).",
    )
    depth: Annotated[str | None, Cli(path=True)] = Field(
        None,
        description="A folder of your depth model's output, for a point-cloud render of the "
        "static scene (points.mp4, EgoSim's static condition): per video <stem>.depth.npz with "
        "'depth' (N,H,W; any unit; 0/NaN/inf unknown) or 'disparity' (inverse depth, as Depth "
        "Anything and MiDaS give), optional 'frames' (N,) source frame per map (default every "
        "frame); any size of the video's aspect. Fitted to the SfM points per map; with --poses, "
        "depth is taken as metric in the poses' unit.",
    )
    license: str = Field("unspecified", description="Licence of the videos, recorded per sample.")
    allow_missing_prompt: bool = Field(
        False, description="Keep videos without a <stem>.txt prompt, with an empty prompt."
    )
    splats: Annotated[str | None, Cli(out="splats")] = Field(
        None, description="Folder to keep each clip's trained splat in, as <key>.ply."
    )
