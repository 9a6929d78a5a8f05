"""Rendered frames cached on disk, so a killed unit resumes where it stopped.

Frames live under the unit's scratch folder, one PNG per (pass, name); a file only appears
complete (written to a temporary name, then renamed), so a kill mid-write leaves nothing
half-written behind. Every render is also appended to `renders.log`, which is how the tests and
the benchmark count what was rendered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


class FrameCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.log = self.root / "renders.log"

    def path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.png"

    def get(self, kind: str, name: str, render: Callable[[Path], None]) -> np.ndarray:
        """The cached frame, or `render(tmp_path)` it now (writing a PNG) and keep it."""
        path = self.path(kind, name)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp.png")
            render(tmp)
            os.replace(tmp, path)
            with open(self.log, "a") as log:
                log.write(f"{kind} {name}\n")
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    def put_array(self, kind: str, name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """Like `get` for frames computed in Python (the hand pass)."""
        return self.get(kind, name, lambda tmp: Image.fromarray(make()).save(tmp, format="PNG"))

    def rendered(self) -> list[tuple[str, str]]:
        """Every render this unit has done, across restarts, in order."""
        if not self.log.is_file():
            return []
        return [tuple(line.split(" ", 1)) for line in self.log.read_text().splitlines() if line]
