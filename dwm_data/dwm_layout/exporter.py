"""`export-dwm`: shards -> the official folder layout, so the official trainer reads our data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dwm_data.dwm_layout import SUBDIRS
from dwm_data.sample import Sample
from dwm_data.store import read_samples


def layout_place(sample: Sample) -> tuple[str, str]:
    """(relative folder, stem): where the sample came from, or `<source>/<key>` for built ones."""
    layout = sample.meta.get("layout") or {}
    if layout.get("dir") is not None and layout.get("stem"):
        return layout["dir"], layout["stem"]
    return sample.meta.get("source", {}).get("name", "dwm"), sample.key


def export_dwm(
    shards: str | Path | Iterable[str | Path],
    out: Path,
    on_sample: Callable[[Sample], None] = lambda sample: None,
) -> int:
    """Write every sample's videos and prompt; returns the number of samples exported."""
    count = 0
    for sample in read_samples(shards):
        relative, stem = layout_place(sample)
        base = out / relative
        files = {base / sub / f"{stem}.mp4": getattr(sample, name) for name, sub in SUBDIRS.items()}
        files[base / "prompts_rewrite" / f"{stem}.txt"] = sample.prompt.encode("utf-8")
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        count += 1
        on_sample(sample)
    return count
