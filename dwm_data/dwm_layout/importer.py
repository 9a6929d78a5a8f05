"""`import-dwm`: triplets in the official folder layout (or a split list) -> shards.

Videos that already match the recipe (H.264, frame count, size, fps) are stored byte for byte,
whatever their pixel format, so importing and exporting the official data gives back the same
files. Anything else is resampled and refitted to the recipe.

The prompt is `prompts_rewrite/` (what the official trainer reads), else `prompts/`. A raw
caption in `prompts/` is kept in `json` where `dwm-data caption` keeps its own
(`caption.raw`), so the export writes both folders back as they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dwm_data.builder import Builder, UnitContext, WorkUnit
from dwm_data.dwm_layout import OFFICIAL_ROOTS, PROMPT_DIRS, SUBDIRS
from dwm_data.dwm_layout.options import ImportOptions
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.sample import Sample, make_key, make_sample
from dwm_data.video import probe, read_clip

RAW_PROMPTS = "prompts"  # the official raw captions, before their rewrite


class ImportBuilder(Builder):
    Options = ImportOptions
    loose_options = frozenset({"allow_missing_prompt"})

    def preflight(self) -> None:
        """A wrong root for a list file is the command's error, not every unit's failure."""
        source = Path(self.options.source).resolve()
        if not source.is_file():
            return
        root = Path(self.options.data_root).resolve() if self.options.data_root else source.parent
        if not root.is_dir():
            raise DwmDataError(f"import-dwm: --data-root {root} is not a folder")
        entries = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        if entries and not any((root / entry).is_file() for entry in entries):
            raise DwmDataError(
                f"import-dwm: none of the {len(entries)} videos listed in {source} exists under "
                f"{root} (first: {root / entries[0]}); check --data-root"
            )

    def plan(self) -> list[WorkUnit]:
        source = Path(self.options.source).resolve()
        if source.is_file():
            root = (
                Path(self.options.data_root).resolve() if self.options.data_root else source.parent
            )
            videos = [
                root / line.strip() for line in source.read_text().splitlines() if line.strip()
            ]
        elif source.is_dir():
            root = source
            videos = sorted(source.rglob(f"{SUBDIRS['video']}/*.mp4"))
        else:
            raise DwmDataError(f"import-dwm: {source} is neither a folder nor a list file")
        if not videos:
            raise DwmDataError(f"import-dwm: no {SUBDIRS['video']}/*.mp4 under {source}")
        listing = source.stem if source.is_file() else None  # exported again under its name
        units = []
        for line, video in enumerate(videos):
            clip_dir = video.parent.parent
            relative = (
                clip_dir.relative_to(root).as_posix()
                if clip_dir.is_relative_to(root)
                else clip_dir.name
            )
            units.append(
                WorkUnit(
                    id=f"{relative}/{video.stem}",
                    payload={
                        "dir": str(clip_dir),
                        "relative": relative,
                        "stem": video.stem,
                        "list": listing,
                        "line": line if listing else None,
                    },
                )
            )
        return units

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        clip_dir, stem, relative = (
            Path(unit.payload["dir"]),
            unit.payload["stem"],
            unit.payload["relative"],
        )
        video_cfg = self.recipe.video
        encoded: dict[str, bytes] = {}
        frames = {}
        source_frames: list[int] = []
        paths = {name: clip_dir / sub / f"{stem}.mp4" for name, sub in SUBDIRS.items()}
        for name, path in paths.items():  # every file exists and opens before any decoding
            if not path.exists():
                raise UnitError("input", f"missing {SUBDIRS[name]}/{stem}.mp4 in {clip_dir}")
        infos = {name: probe(path) for name, path in paths.items()}
        prompt = self._prompt(clip_dir, stem)
        raw = clip_dir / RAW_PROMPTS / f"{stem}.txt"
        for name, path in paths.items():
            if infos[name].matches(
                video_cfg.frames, video_cfg.width, video_cfg.height, video_cfg.rate
            ):
                encoded[name] = path.read_bytes()
                source_frames = list(range(infos[name].frames))
            else:
                frames[name], source_frames = read_clip(
                    path,
                    video_cfg.frames,
                    video_cfg.rate,
                    video_cfg.width,
                    video_cfg.height,
                    video_cfg.resize,
                )
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        meta = {
            "source": {
                "name": "dwm-layout",
                "path": relative,
                "stem": stem,
                "license": self.options.license,
            },
            "source_frames": source_frames,
            "layout": {
                "dir": relative,
                "stem": stem,
                "list": unit.payload.get("list"),
                "line": unit.payload.get("line"),
            },
            "hands": {"representation": "mesh", "backend": "imported"},
            "stored_as_is": sorted(encoded),
        }
        if raw.is_file():
            meta["caption"] = {"captioner": "imported", "raw": raw.read_bytes().decode("utf-8")}
        yield make_sample(
            make_key("dwm", *parts, stem),
            frames,
            video_cfg.rate,
            self.recipe.codecs.to_codecs(OFFICIAL_ROOTS.get(parts[0]) if parts else None),
            prompt,
            meta,
            encoded=encoded,
        )

    def _prompt(self, clip_dir: Path, stem: str) -> str:
        for sub in PROMPT_DIRS:
            path = clip_dir / sub / f"{stem}.txt"
            if path.exists():
                return path.read_bytes().decode("utf-8")
        if self.options.allow_missing_prompt:
            return ""
        raise UnitError(
            "prompt",
            f"no prompt for {stem} (looked in {', '.join(PROMPT_DIRS)} under {clip_dir}); "
            "pass --allow-missing-prompt to import it with an empty prompt",
        )
