"""TASTE-Rob captions: `captions.xlsx`, sheets `Single-Hand`/`Double-Hand`, columns id, scene,
caption. The lookup key is DWM's: (subset, scene prefix lower-cased, id), with the folder's
spelling "dinning" mapped to the sheet's "dining"."""

from __future__ import annotations

from pathlib import Path

from dwm_data.errors import DwmDataError
from dwm_data.extras import require

SHEETS = {"Single-Hand": "SingleHand", "Double-Hand": "DoubleHand"}
_ALIASES = {"dinning": "dining"}

CaptionKey = tuple[str, str, int | str]


def caption_key(subset: str, scene: str, clip_id: str | int | float) -> CaptionKey:
    """Ids are numbers in the release (spreadsheets may store them as floats); a renamed clip
    keeps its name (and finds no caption)."""
    prefix = str(scene).split("_")[0].strip().lower()
    if isinstance(clip_id, float) and clip_id.is_integer():
        clip_id = int(clip_id)
    text = str(clip_id).strip()
    return subset, _ALIASES.get(prefix, prefix), int(text) if text.isdigit() else text


def read_captions(path: Path) -> dict[CaptionKey, str]:
    """All captions of the workbook; rows without an id or caption are skipped."""
    openpyxl = require("openpyxl", "hands")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for a broken or foreign file
        raise DwmDataError(f"cannot read captions {path}: {exc}") from exc
    captions: dict[CaptionKey, str] = {}
    try:
        for sheet, subset in SHEETS.items():
            if sheet not in book.sheetnames:
                continue
            rows = book[sheet].iter_rows(values_only=True)
            header = [str(h).strip().lower() if h is not None else "" for h in next(rows, ())]
            missing = {"id", "scene", "caption"} - set(header)
            if missing:
                raise DwmDataError(
                    f"{path} sheet {sheet} lacks column(s) {', '.join(sorted(missing))}"
                )
            at = {name: header.index(name) for name in ("id", "scene", "caption")}
            for row in rows:
                clip_id, scene, caption = (row[at[n]] if at[n] < len(row) else None for n in at)
                if clip_id is None or caption is None or not str(caption).strip():
                    continue
                captions[caption_key(subset, str(scene), clip_id)] = str(caption).strip()
    finally:
        book.close()
    if not captions:
        raise DwmDataError(f"{path} holds no captions in sheets {', '.join(SHEETS)}")
    return captions
