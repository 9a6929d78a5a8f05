"""Commands that act on a user's own scene: simulate one hand motion, rank several by a goal.

Thin: parse, load the recipe, call `dwm_model.simulate` / `dwm_model.rank`. Nothing heavy at
the top.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

import typer

from cli.common import SetOpt, console
from cli.train import BaseOpt, RunRecipeOpt, _run_recipe

WeightsArg = Annotated[
    Path,
    typer.Argument(
        help="A training run folder or one of its checkpoints (its recipe.json sets sizes)."
    ),
]
SceneArg = Annotated[
    Path,
    typer.Argument(
        help="A Gaussian splat .ply (ours or the INRIA/nerfstudio/gsplat 3DGS layout), a mesh "
        "(.glb, .gltf, .obj, .ply with faces) or a .blend."
    ),
]
PathOpt = Annotated[
    Path,
    typer.Option(
        "--path",
        help="Camera path: camera.npy (OpenCV camera-to-world), a nerfstudio camera_path.json, "
        "or keyframes (.yaml/.json: position + look_at or camera_to_world, time, fov).",
    ),
]
UpOpt = Annotated[
    str | None,
    typer.Option(
        help="The scene file's up axis (x, -x, y, -y, z, -z); default: y for .glb/.gltf/.obj, "
        "z for .ply and .blend."
    ),
]
ScaleOpt = Annotated[float, typer.Option(help="Metres per scene unit.")]
FovOpt = Annotated[
    float | None,
    typer.Option(help="Horizontal field of view in degrees (default: the path file's, else 90)."),
]
PathFpsOpt = Annotated[
    str | None,
    typer.Option(
        "--path-fps", help="Poses per second of a camera.npy (default: the recipe's fps)."
    ),
]
PlaceOpt = Annotated[
    Literal["ego", "world"],
    typer.Option(
        "--place",
        help="ego: hands in the camera frame, moving with it; world: hands at world positions "
        "(camera-frame motions lifted by their own cameras).",
    ),
]
ManoOpt = Annotated[
    Path | None,
    typer.Option(
        "--mano-dir",
        help="Folder with MANO_RIGHT.pkl and MANO_LEFT.pkl: mesh hands (else skeletons).",
    ),
]
MotionFpsOpt = Annotated[
    str | None,
    typer.Option("--motion-fps", help="Frames per second of the motion (default: the recipe's)."),
]
MotionPosesOpt = Annotated[
    Path | None,
    typer.Option(
        "--motion-poses",
        help="camera.npy of the clip a camera-frame motion was tracked in (--place world).",
    ),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", min=1, help="Cycles samples for a .blend scene.")
]
PromptOpt = Annotated[
    str | None, typer.Option("--prompt", help="Text prompt (default: a sample's own, else empty).")
]
StepsOpt = Annotated[int | None, typer.Option(help="Denoising steps (default: recipe).")]
GuidanceOpt = Annotated[float | None, typer.Option(help="Classifier-free guidance scale.")]
SeedOpt = Annotated[int | None, typer.Option(help="Noise seed (default: recipe).")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", metavar="", help="Replace an earlier result in OUT.")
]


def _fps(text: str | None) -> Fraction | None:
    from dwm_data.errors import DwmDataError

    try:
        rate = Fraction(text) if text else None
    except (ValueError, ZeroDivisionError) as exc:
        raise DwmDataError(
            f"a frame rate must be a number like 8 or 30000/1001, got {text!r}"
        ) from exc
    if rate is not None and rate <= 0:
        raise DwmDataError(f"a frame rate must be positive, got {text!r}")
    return rate


def _settings(resolved, steps: int | None, guidance: float | None, seed: int | None):
    from dwm_model.config import SampleConfig

    cfg = resolved.section("sample", SampleConfig)
    update = {"steps": steps, "guidance": guidance, "seed": seed}
    return cfg.model_copy(update={k: v for k, v in update.items() if v is not None})


def simulate(
    weights: WeightsArg,
    scene: SceneArg,
    out: Annotated[Path, typer.Argument(help="Folder for the result (written whole).")],
    path: PathOpt,
    hands: Annotated[
        Path | None,
        typer.Option(
            "--hands",
            help="Hand motion: hands.npz (ours), MANO parameters per frame (.npz), or keypoints "
            "per frame (.npy/.npz).",
        ),
    ] = None,
    from_sample: Annotated[
        tuple[Path, str] | None,
        typer.Option("--from-sample", help="Take the hands from a built sample: SHARDS KEY."),
    ] = None,
    no_hand: Annotated[
        bool,
        typer.Option("--no-hand", metavar="", help="Navigation only: an all-black hand video."),
    ] = False,
    no_sample: Annotated[
        bool,
        typer.Option(
            "--no-sample", help="Write the condition videos only (for the official code)."
        ),
    ] = False,
    prompt: PromptOpt = None,
    up: UpOpt = None,
    scale: ScaleOpt = 1.0,
    fov: FovOpt = None,
    path_fps: PathFpsOpt = None,
    place: PlaceOpt = "ego",
    mano_dir: ManoOpt = None,
    motion_fps: MotionFpsOpt = None,
    motion_poses: MotionPosesOpt = None,
    samples: SamplesOpt = 64,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    base_model: BaseOpt = None,
    recipe: RunRecipeOpt = None,
    set: SetOpt = None,
) -> None:
    """Simulate a hand motion in your own scene: render its static and hand videos along a camera path (the builders' renderers) and sample the interaction video.

    OUT gets static.mp4, hand.mp4, video.mp4, preview.mp4/.png, txt, camera.npy, camera_path.json, hands.npz and simulate.json (every input and setting). With --no-sample and -r, WEIGHTS is not read.
    """
    from dwm_data.errors import DwmDataError
    from dwm_model.simulate import SceneSpec, spec_record
    from dwm_model.simulate import simulate as run

    given = sum((hands is not None, from_sample is not None, no_hand))
    if given != 1:
        raise DwmDataError("give exactly one of --hands, --from-sample SHARDS KEY, --no-hand")
    resolved = _run_recipe(weights, recipe, set)  # with -r, WEIGHTS is not read for it
    scene_spec = SceneSpec(scene, path, up, scale, fov, _fps(path_fps), samples)
    motion = _motion(hands, from_sample, place, mano_dir, motion_fps, motion_poses)
    settings = _settings(resolved, steps, guidance, seed)
    model = None if no_sample else _model(weights, base_model)
    inputs = {
        **spec_record(scene_spec, motion),
        "weights": str(weights.resolve()),
        "prompt": prompt,
    }
    files = run(model, scene_spec, motion, out, resolved, settings, prompt, overwrite, inputs)
    console().print(f"wrote {out}: {', '.join(files)}")


def _motion(hands, from_sample, place, mano_dir, motion_fps, motion_poses):
    from dwm_model.simulate import MotionSpec

    shards, key = (), None
    if from_sample is not None:
        from dwm_data.store import shard_paths

        shards, key = tuple(shard_paths([str(from_sample[0])])), from_sample[1]
    return MotionSpec(hands, shards, key, place, mano_dir, _fps(motion_fps), motion_poses)


def _model(weights: Path, base_model: Path | None):
    from dwm_data.errors import MissingAssetError
    from dwm_model.generate import WorldModel

    if not weights.is_dir():
        raise MissingAssetError(
            "DWM weights", str(weights), "train with `dwm-data train` or download the release"
        )
    return WorldModel.from_weights(weights, base_model)


def rank(
    weights: WeightsArg,
    scene: SceneArg,
    path: PathOpt,
    candidates: Annotated[
        list[Path],
        typer.Option("--candidates", help="Candidate hand motions (repeat, or several after it)."),
    ],
    goal: Annotated[
        str,
        typer.Option("--goal", help="An image file (LPIPS to the final frame) or a text (CLIP)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for rank.json, rank.md, contact.png.")
    ] = Path("rank"),
    seeds: Annotated[
        int, typer.Option(min=1, help="Samples per candidate (seed, seed+1, ...), scores averaged.")
    ] = 1,
    clip: Annotated[
        Path | None,
        typer.Option(
            "--clip", help="A local CLIP model folder (transformers layout), for a text goal."
        ),
    ] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="Text prompt for every candidate.")] = "",
    up: UpOpt = None,
    scale: ScaleOpt = 1.0,
    fov: FovOpt = None,
    path_fps: PathFpsOpt = None,
    place: PlaceOpt = "ego",
    mano_dir: ManoOpt = None,
    motion_fps: MotionFpsOpt = None,
    samples: SamplesOpt = 64,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    base_model: BaseOpt = None,
    recipe: RunRecipeOpt = None,
    set: SetOpt = None,
) -> None:
    """Choose an action: simulate every candidate hand motion along one path and rank them by how close the outcome comes to a goal.

    An image goal scores the final frame by LPIPS (VGG; backbone from the recipe's eval.lpips_backbone), a text goal the frames by CLIP similarity (--clip). Writes rank.json, rank.md, contact.png (last frames in rank order) and each candidate's result under candidates/.
    """
    from rich.table import Table

    from dwm_model.config import EvalConfig
    from dwm_model.evaluate import local_path
    from dwm_model.rank import parse_goal, scorer
    from dwm_model.rank import rank as run
    from dwm_model.simulate import MotionSpec, SceneSpec, spec_record

    resolved = _run_recipe(weights, recipe, set)
    goal_spec = parse_goal(goal)
    lpips = local_path(resolved.section("eval", EvalConfig).lpips_backbone)
    score = scorer(goal_spec, lpips, clip)  # missing metric weights: one line, before sampling
    model = _model(weights, base_model)
    scene_spec = SceneSpec(scene, path, up, scale, fov, _fps(path_fps), samples)
    motions = [MotionSpec(c, (), None, place, mano_dir, _fps(motion_fps)) for c in candidates]
    settings = _settings(resolved, steps, guidance, seed)
    inputs = {
        **spec_record(scene_spec),
        "candidates": [str(c.resolve()) for c in candidates],
        "weights": str(weights.resolve()),
    }
    ranked = run(
        model,
        scene_spec,
        motions,
        goal_spec,
        score,
        out,
        resolved,
        settings,
        seeds,
        prompt,
        overwrite,
        inputs,
    )
    table = Table(
        "rank",
        "candidate",
        f"{goal_spec.metric} ({'higher' if goal_spec.higher_is_better else 'lower'} is better)",
    )
    for row in ranked:
        table.add_row(str(row["rank"]), row["candidate"], f"{row['score']:.4f}")
    console().print(table)
    console().print(f"written to {out / 'rank.json'}, rank.md and contact.png")
