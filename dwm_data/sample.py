"""The sample contract (schema v1): one triplet of aligned videos plus prompt and metadata.

Every builder produces `Sample`s through `make_sample`, and every consumer reads them through
`Sample.from_wds`, so the checks that keep the three videos aligned live in one place.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from dwm_data import SCHEMA_VERSION, __version__
from dwm_data.errors import SampleError
from dwm_data.video import Codec, VideoInfo, encode_with_info, probe, x264_options

VIDEO_KEYS = ("video", "static", "hand")
# Videos a sample may hold beside the triplet, aligned with it, and the recipe codec each is
# encoded with: `points` is the static scene drawn from a point cloud (build-ego --depth).
OPTIONAL_VIDEOS = {"points": "static"}
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_@+\-]*$")
HAND_SIDES = ("left", "right")
# The official hand colours (RGB in 0..1); the released checkpoint was trained on them.
HAND_COLORS = {"left": (0.5, 0.8, 0.5), "right": (0.8, 0.4, 0.4)}


def make_key(*parts: str | int) -> str:
    """A WebDataset-safe key from source ids: no dots (WebDataset splits at the first one)."""
    text = "-".join(str(p) for p in parts if str(p) != "")
    key = re.sub(r"[^A-Za-z0-9_@+\-]", "_", text).strip("_-")
    if not key:
        raise SampleError(f"cannot make a key from {parts!r}")
    return key


@dataclass
class Sample:
    """One triplet as stored: encoded mp4 bytes, prompt, metadata and optional arrays."""

    key: str
    video: bytes
    static: bytes
    hand: bytes
    prompt: str
    meta: dict[str, Any]
    camera: np.ndarray | None = None
    hands: bytes | None = None
    points: bytes | None = None
    infos: dict[str, VideoInfo] = field(default_factory=dict, repr=False, compare=False)

    def validate(self) -> VideoInfo:
        """Check the contract; return the shared video info. Raises SampleError naming the problem."""
        if not KEY_PATTERN.match(self.key):
            raise SampleError(f"{self.key}: key must match {KEY_PATTERN.pattern} (no dots)")
        for name in ("schema_version", "source"):
            if name not in self.meta:
                raise SampleError(f"{self.key}: json lacks '{name}'")
        if self.meta["schema_version"] != SCHEMA_VERSION:
            raise SampleError(
                f"{self.key}: schema_version {self.meta['schema_version']}, this tool reads {SCHEMA_VERSION}"
            )
        for name in self.video_names:
            if name not in self.infos:
                self.infos[name] = probe(getattr(self, name))
        ref = self.infos["video"]
        for name in self.video_names[1:]:
            info = self.infos[name]
            for attr in ("frames", "width", "height", "fps"):
                if getattr(info, attr) != getattr(ref, attr):
                    raise SampleError(
                        f"{self.key}: {name}.mp4 has {attr} {_show(getattr(info, attr))}, "
                        f"video.mp4 has {_show(getattr(ref, attr))}"
                    )
        if self.camera is not None:
            cam = self.camera
            if cam.shape != (ref.frames, 4, 4) or not np.isfinite(cam).all():
                raise SampleError(
                    f"{self.key}: camera.npy must be finite ({ref.frames}, 4, 4), got {cam.shape}"
                )
        if self.hands is not None:
            valid = unpack_hands(self.hands)["valid"]
            if valid.shape != (ref.frames, 2):
                raise SampleError(
                    f"{self.key}: hands.npz 'valid' is {valid.shape}, expected ({ref.frames}, 2)"
                )
        return ref

    @property
    def video_names(self) -> tuple[str, ...]:
        """The videos this sample holds: the triplet, then the optional ones it has."""
        return VIDEO_KEYS + tuple(n for n in OPTIONAL_VIDEOS if getattr(self, n) is not None)

    def to_wds(self) -> dict[str, bytes | str]:
        """The tar members, named by the schema; bytes so any WebDataset reader can take them."""
        out: dict[str, bytes | str] = {
            "__key__": self.key,
            "video.mp4": self.video,
            "static.mp4": self.static,
            "hand.mp4": self.hand,
            "txt": self.prompt.encode("utf-8"),
            "json": json.dumps(self.meta, sort_keys=True).encode("utf-8"),
        }
        if self.camera is not None:
            out["camera.npy"] = _npy_bytes(self.camera.astype(np.float32))
        if self.hands is not None:
            out["hands.npz"] = self.hands
        for name in OPTIONAL_VIDEOS:
            if getattr(self, name) is not None:
                out[f"{name}.mp4"] = getattr(self, name)
        return out

    @classmethod
    def from_wds(cls, members: Mapping[str, Any]) -> Sample:
        """Rebuild a sample from raw tar members (as WebDataset groups them)."""
        missing = [m for m in ("video.mp4", "static.mp4", "hand.mp4", "json") if m not in members]
        key = members.get("__key__", "?")
        if missing:
            raise SampleError(f"{key}: missing member(s) {', '.join(missing)}")
        camera = members.get("camera.npy")
        return cls(
            key=key,
            video=members["video.mp4"],
            static=members["static.mp4"],
            hand=members["hand.mp4"],
            prompt=_text(members.get("txt", b"")),
            meta=json.loads(_text(members["json"])),
            camera=np.load(io.BytesIO(camera)) if camera is not None else None,
            hands=members.get("hands.npz"),
            **{name: members.get(f"{name}.mp4") for name in OPTIONAL_VIDEOS},
        )

    @property
    def nbytes(self) -> int:
        return sum(len(v) for v in self.to_wds().values())


def make_sample(
    key: str,
    frames: Mapping[str, np.ndarray],
    fps: Fraction | int,
    codecs: Mapping[str, Codec],
    prompt: str,
    meta: Mapping[str, Any],
    camera: np.ndarray | None = None,
    hands: bytes | None = None,
    encoded: Mapping[str, bytes] | None = None,
) -> Sample:
    """Encode the three frame stacks (or take already encoded ones) and fill the shared metadata.

    `frames` (or `encoded`) may also hold the optional videos (`OPTIONAL_VIDEOS`), encoded with
    the codec of the triplet's video they stand beside.

    `meta` carries what only the builder knows (source ids, source frames, intrinsics, hand
    backend, licence); frame count, size, fps, codecs, schema and tool version are added here.
    `encoded` holds videos stored byte for byte (import of files that already match the recipe).
    """
    encoded = dict(encoded or {})
    stored = set(encoded)
    names = [*VIDEO_KEYS, *(n for n in OPTIONAL_VIDEOS if n in frames or n in encoded)]
    codecs = {**{n: codecs[OPTIONAL_VIDEOS[n]] for n in names if n not in codecs}, **codecs}
    infos = {}
    for name in names:
        if name in encoded:
            infos[name] = probe(encoded[name])
        else:
            encoded[name], infos[name] = encode_with_info(frames[name], fps, codecs[name])
    sample = Sample(key=key, prompt=prompt, meta={}, camera=camera, hands=hands, **encoded)
    sample.infos = infos
    ref = sample.infos["video"]
    sample.meta = {
        **meta,
        "schema_version": SCHEMA_VERSION,
        "tool": f"dwm-data {__version__}",
        "frames": ref.frames,
        "width": ref.width,
        "height": ref.height,
        "fps": str(Fraction(fps)),
        "codecs": {
            name: {"codec": sample.infos[name].codec, "pix_fmt": sample.infos[name].pix_fmt}
            | (_stored_settings(encoded[name]) if name in stored else codecs[name].settings())
            for name in names
        },
    }
    sample.validate()
    return sample


def _stored_settings(data: bytes) -> dict[str, float]:
    """What a file stored as is says of its own encoding (x264 writes its crf into the stream;
    a preset leaves no name there), rather than the recipe's settings it was never encoded with."""
    crf = x264_options(data).get("crf")
    return {"crf": float(crf)} if crf else {}


def pack_hands(
    valid: np.ndarray,
    keypoints_cam: np.ndarray,
    keypoints_px: np.ndarray,
    **extra: np.ndarray,
) -> bytes:
    """`hands.npz` bytes: per frame and side (0 left, 1 right) validity, 21 keypoints in the
    camera frame (metres, MANO/OpenPose order) and their pixels; `extra` holds e.g. MANO params."""
    frames = valid.shape[0]
    if (
        valid.shape != (frames, 2)
        or keypoints_cam.shape != (frames, 2, 21, 3)
        or keypoints_px.shape != (frames, 2, 21, 2)
    ):
        raise SampleError(
            f"hands arrays must be (F,2), (F,2,21,3), (F,2,21,2); got {valid.shape}, "
            f"{keypoints_cam.shape}, {keypoints_px.shape}"
        )
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        valid=valid.astype(bool),
        keypoints_cam=keypoints_cam.astype(np.float32),
        keypoints_px=keypoints_px.astype(np.float32),
        **extra,
    )
    return buffer.getvalue()


def unpack_hands(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def _show(value: Any) -> str:
    return str(value) if not isinstance(value, Fraction) else f"{float(value):g} fps"
