"""`render-trumans`: one work unit per TRUMANS recording, one sample per clip.

A unit is a whole recording so the frames its overlapping clips share are rendered once; it runs
in a fresh process (`max_units_per_process = 1`) because Blender leaks state across scenes, and
its frames are cached in the unit's scratch folder so a killed unit resumes mid-recording.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dwm_data.builder import Builder, UnitContext, WorkUnit
from dwm_data.sample import Sample, make_key, make_sample
from dwm_data.trumans import release
from dwm_data.trumans.options import TrumansOptions, TrumansRecipe


class TrumansBuilder(Builder):
    Options = TrumansOptions
    max_units_per_process = 1

    def preflight(self) -> None:
        """The release root and, for `--body smplx`, the SMPL-X model every recording needs."""
        from dwm_data.errors import DwmDataError, MissingAssetError
        from dwm_data.trumans.bodies import smplx_model_file

        opts = self.options
        if not Path(opts.root).is_dir():
            raise DwmDataError(f"render-trumans: the TRUMANS root {opts.root} is not a folder")
        if opts.body != "smplx":
            return
        if opts.smplx_model is None:
            raise MissingAssetError(
                "SMPL-X model",
                "--smplx-model (not given)",
                "register at https://smpl-x.is.tue.mpg.de and pass --smplx-model",
            )
        smplx_model_file(Path(opts.smplx_model), opts.smplx_gender)

    def plan(self) -> list[WorkUnit]:
        opts = self.options
        chosen = release.select(
            Path(opts.root), opts.scenes, opts.recordings, Path(opts.split) if opts.split else None
        )
        return [
            WorkUnit(f"{r.scene}/{r.name}", {"scene": r.scene, "recording": r.name}) for r in chosen
        ]

    def settings(self):
        from dwm_data.trumans.passes import PassSettings

        video = self.recipe.video
        return PassSettings(
            video.width,
            video.height,
            video.frames,
            self.options,
            self.recipe.section("trumans", TrumansRecipe),
        )

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        from dwm_data.trumans.passes import render_recording

        root = Path(self.options.root)
        recording = release.Recording(unit.payload["scene"], unit.payload["recording"])
        actions = release.read_actions(root, recording.name)
        settings = self.settings()
        k = settings.intrinsics
        for rendered in render_recording(root, recording, settings, ctx.scratch, ctx.heartbeat):
            clip = rendered.clip
            meta = {
                "source": {
                    "name": "trumans",
                    "scene": recording.scene,
                    "recording": recording.name,
                    "clip": clip.index,
                    "license": release.LICENSE,
                },
                "source_frames": list(clip.frames),
                "source_fps": 30,
                "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy},
                "hands": {"representation": "mesh", "backend": rendered.info["hand_backend"]},
                "body": self.options.body,
                "moving_objects": rendered.moving,
                "clips": {
                    "policy": self.options.clips,
                    "windows": rendered.info["windows"],
                    "kept": rendered.info["kept"],
                },
                "render": {
                    "engine": "CYCLES",
                    "device": rendered.info["device"],
                    "samples": settings.knobs.samples,
                    "denoise": settings.knobs.denoise,
                    "fov": settings.knobs.fov,
                    "frame_skip": settings.knobs.frame_skip,
                    "clip_stride": settings.knobs.clip_stride,
                },
            }
            yield make_sample(
                make_key("trumans", recording.scene, recording.name, f"{clip.index:05d}"),
                {"video": rendered.video, "static": rendered.static, "hand": rendered.hand},
                self.recipe.video.rate,
                self.recipe.codecs.to_codecs("trumans"),
                release.prompt(actions, clip.frames[0], clip.frames[-1]),
                meta,
                camera=rendered.cameras,
            )
