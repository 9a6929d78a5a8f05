"""Video I/O on PyAV: exact frame counts, explicit sizes, fps as a Fraction.

Every pitfall the field trips on is handled here once: libx264 holds frames in its look-ahead
until flushed, odd sizes make yuv420p fail opaquely, float frame rates are refused, and
container headers lie about frame counts (so we count packets). Resizing uses swscale through
PyAV, the same scaler the official ffmpeg scripts used.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from dwm_data.errors import UnitError

Source = bytes | str | Path
ResizeMode = Literal["letterbox", "crop"]


class VideoError(UnitError):
    """A video cannot be read or written as asked; recorded as the unit's failure."""

    def __init__(self, message: str, stage: str = "video"):
        super().__init__(stage, message)


@dataclass(frozen=True)
class Codec:
    """Encoder settings recorded with every sample so a reader knows how it was made."""

    name: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "yuv420p"
    gop: int | None = None  # frames between keyframes; None: x264's own (250)
    bframes: int | None = None  # None: the preset's

    def settings(self) -> dict[str, int | str]:
        """What a sample's json records of the encoding, beside the codec and pixel format."""
        extra = {"gop": self.gop, "bframes": self.bframes}
        return {"crf": self.crf, "preset": self.preset} | {
            key: value for key, value in extra.items() if value is not None
        }

    def options(self) -> dict[str, str]:
        """The encoder's options (ffmpeg's names: `-g`, `-bf`)."""
        extra = {"g": self.gop, "bf": self.bframes}
        return {"crf": str(self.crf), "preset": self.preset} | {
            key: str(value) for key, value in extra.items() if value is not None
        }


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: Fraction
    codec: str
    pix_fmt: str

    def matches(
        self, frames: int, width: int, height: int, fps: Fraction, codec: str = "h264"
    ) -> bool:
        return (self.frames, self.width, self.height, self.fps, self.codec) == (
            frames,
            width,
            height,
            Fraction(fps),
            codec,
        )


def _open(source: Source):
    import av

    try:
        if isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise VideoError("empty video data (0 bytes)", "video-read")
            return av.open(io.BytesIO(source), "r")
        path = Path(source)
        if not path.exists():
            raise VideoError(f"video file not found: {path}", "video-read")
        if path.stat().st_size == 0:
            raise VideoError(f"empty video file (0 bytes): {path}", "video-read")
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise VideoError(f"cannot open video {_name(source)}: {exc}", "video-read") from exc


def _name(source: Source) -> str:
    return "<memory>" if isinstance(source, bytes | bytearray | memoryview) else str(source)


def check_size(width: int, height: int, multiple: int = 2) -> None:
    """Refuse sizes the codec or the model cannot take, before any work is spent on them."""
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise VideoError(
            f"size {width}x{height} must be positive multiples of {multiple}", "video-size"
        )


def probe(source: Source) -> VideoInfo:
    """Read size, fps and codec from the header and count frames by demuxing (no decoding)."""
    return _demux(source)[0]


@dataclass(frozen=True)
class FrameTimes:
    """When each frame of a clip is shown and when the clip ends, in seconds from the file's start."""

    times: list[Fraction]  # presentation order
    end: Fraction  # the last frame's time plus its duration


def frame_times(source: Source) -> FrameTimes:
    """Frame times as ffmpeg's command line hands them to its filters: packet timestamps, less
    the file's start time (no decoding)."""
    return _demux(source)[1]


def _demux(source: Source) -> tuple[VideoInfo, FrameTimes]:
    import av

    with _open(source) as container:
        if not container.streams.video:
            raise VideoError(f"no video stream in {_name(source)}", "video-read")
        stream = container.streams.video[0]
        try:
            packets = [(p.pts, p.duration or 0) for p in container.demux(stream) if p.size]
        except av.FFmpegError as exc:
            raise VideoError(f"corrupt video {_name(source)}: {exc}", "video-read") from exc
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        info = VideoInfo(
            frames=len(packets),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=Fraction(rate) if rate else Fraction(0),
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
        )
        base = Fraction(stream.time_base) if stream.time_base else None
        start = Fraction(container.start_time or 0, 1_000_000)
    return info, _times(packets, base, start, info.fps)


def _times(
    packets: list[tuple[int | None, int]], base: Fraction | None, start: Fraction, fps: Fraction
) -> FrameTimes:
    """Presentation times from packet timestamps; a stream without them (raw H.264) is timed
    by its frame rate, as ffmpeg does, and so is a last frame without a duration."""
    period = 1 / fps if fps > 0 else Fraction(0)
    if base is None or any(pts is None for pts, _ in packets):
        return FrameTimes([i * period for i in range(len(packets))], len(packets) * period)
    offset = _round(start / base)
    packets = sorted(packets)
    times = [(pts - offset) * base for pts, _ in packets]
    if not times:
        return FrameTimes([], Fraction(0))
    return FrameTimes(times, times[-1] + (packets[-1][1] * base or period))


def _round(value: Fraction) -> int:
    """Nearest integer, halves away from zero (libavutil's AV_ROUND_NEAR_INF)."""
    whole = int(abs(value) + Fraction(1, 2))
    return whole if value >= 0 else -whole


def iter_frames(source: Source, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames one at a time, so long source clips never sit in memory whole.

    `size` (width, height) scales with swscale's bicubic filter while converting to RGB.
    """
    with _open(source) as container:
        yield from _frames(container, source, size)


def _frames(container, source: Source, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    import av

    if not container.streams.video:
        raise VideoError(f"no video stream in {_name(source)}", "video-read")
    kwargs = {"width": size[0], "height": size[1], "interpolation": "BICUBIC"} if size else {}
    try:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24", **kwargs)
    except av.FFmpegError as exc:
        raise VideoError(f"corrupt video {_name(source)}: {exc}", "video-read") from exc


def decode(source: Source, expected_frames: int | None = None) -> np.ndarray:
    """Decode a whole video to (F, H, W, 3) uint8, checking the count when one is expected.

    Frames go straight into one array sized from the header's count (no list, no stack copy):
    each frame's temporary is freed at once and reused, which keeps reading at bare-PyAV speed.
    """
    with _open(source) as container:
        header = container.streams.video[0].frames if container.streams.video else 0
        out: np.ndarray | None = None
        extra: list[np.ndarray] = []
        count = 0
        for array in _frames(container, source):
            if out is None:
                out = np.empty((max(header, 1), *array.shape), dtype=np.uint8)
            if count < len(out):
                out[count] = array
            else:
                extra.append(array)
            count += 1
    if out is None:
        raise VideoError(f"no frames decoded from {_name(source)}", "video-read")
    frames = np.concatenate([out, np.stack(extra)]) if extra else out[:count]
    if expected_frames is not None and count != expected_frames:
        raise VideoError(
            f"{_name(source)} has {count} frames, expected {expected_frames}", "video-frames"
        )
    return frames


def encode(
    frames: np.ndarray | Sequence[np.ndarray], fps: Fraction | int | str, codec: Codec
) -> bytes:
    """Encode RGB frames to an in-memory mp4 holding exactly len(frames) frames."""
    return encode_with_info(frames, fps, codec)[0]


def encode_with_info(
    frames: np.ndarray | Sequence[np.ndarray], fps: Fraction | int | str, codec: Codec
) -> tuple[bytes, VideoInfo]:
    """`encode`, also returning what was written, from the packets actually muxed (so neither we
    nor the caller need to demux the result again to count its frames)."""
    import av

    if len(frames) == 0:
        raise VideoError("cannot encode a video with no frames", "video-write")
    height, width = frames[0].shape[:2]
    check_size(width, height)
    rate = Fraction(fps)
    buffer = io.BytesIO()
    muxed = 0
    try:
        with av.open(buffer, "w", format="mp4") as container:
            stream = container.add_stream(codec.name, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, codec.pix_fmt
            stream.options = codec.options()
            # Frame threads keep one slice per frame, as in the official files (PyAV's default,
            # slice threads, cuts each frame into one slice per thread).
            stream.codec_context.thread_type = "FRAME"
            for array in frames:
                if array.shape != (height, width, 3) or array.dtype != np.uint8:
                    raise VideoError(
                        f"frame of shape {array.shape} {array.dtype}, expected ({height}, {width}, 3) uint8",
                        "video-write",
                    )
                packets = stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24"))
                muxed += len(packets)
                container.mux(packets)
            packets = stream.encode(None)  # flush the look-ahead, or frames are lost
            muxed += len(packets)
            container.mux(packets)
            info = VideoInfo(
                muxed, width, height, rate, stream.codec_context.codec.canonical_name, codec.pix_fmt
            )
    except av.FFmpegError as exc:
        raise VideoError(
            f"encoding failed ({codec.name} {codec.pix_fmt}): {exc}", "video-write"
        ) from exc
    data = buffer.getvalue()
    if info.frames != len(frames):
        raise VideoError(f"encoder wrote {info.frames} of {len(frames)} frames", "video-write")
    return data, info


def x264_options(source: Source) -> dict[str, str]:
    """The settings libx264 writes into the stream (`crf=23.0`, `bframes=3`, ...), so a file
    says how it was encoded; empty for a stream x264 did not make."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    start = data.find(b"x264 - core")
    if start < 0:
        return {}
    text = data[start : data.find(b"\0", start)].decode("ascii", "replace")
    _, _, options = text.partition(" options: ")
    return dict(item.split("=", 1) for item in options.split() if "=" in item)


def select_frames(
    times: Sequence[Fraction], end: Fraction, fps: Fraction | int, count: int
) -> list[int]:
    """Indices of the first `count` frames ffmpeg's `fps` filter outputs (default rounding `near`,
    end of stream `round`), as the official TASTE-Rob script's `fps=8` picked them.

    The filter stamps each source frame with its time rounded to the output grid and emits, for
    each grid step, the last frame stamped at or before it; the grid starts at the first stamp and
    stops at the stamp of `end`. On 29.97 fps that is source frames 1, 5, 9, 13, 16, ... Raises
    when the source is too short, instead of writing a short clip as the official script did.
    """
    rate = Fraction(fps)
    stamps = [_round(t * rate) for t in times]
    last = _round(end * rate)
    picks: list[int] = []
    if stamps:
        index, step = 0, stamps[0]
        while len(picks) < count and step < last:
            if index + 1 < len(stamps) and stamps[index + 1] <= step:
                index += 1
                continue
            picks.append(index)
            step += 1
    if len(picks) < count:
        span = end - times[0] if times else Fraction(0)
        source_fps = len(times) / span if span > 0 else Fraction(0)
        raise VideoError(
            f"clip too short: {len(times)} frames at {float(source_fps):.4g} fps give "
            f"{len(picks)} of {count} frames at {float(rate):g} fps",
            "video-frames",
        )
    return picks


def fit_size(
    width: int, height: int, target_w: int, target_h: int, mode: ResizeMode
) -> tuple[int, int]:
    """The scaled size before padding (letterbox) or cropping (crop) to the target.

    Rounded like ffmpeg's `force_original_aspect_ratio` (1920x1080 -> 720x405 letterboxed, as in
    the official TASTE-Rob clips); odd sizes are fine here because the canvas is what gets encoded.
    """
    pick = min if mode == "letterbox" else max
    scale = pick(target_w / width, target_h / height)
    scaled_w, scaled_h = int(width * scale + 0.5), int(height * scale + 0.5)
    if mode == "letterbox":
        return max(1, min(scaled_w, target_w)), max(1, min(scaled_h, target_h))
    return max(scaled_w, target_w), max(scaled_h, target_h)


def place(frame: np.ndarray, target_w: int, target_h: int) -> np.ndarray:
    """Centre an already scaled frame on the target canvas: pad with black, or crop the excess."""
    h, w = frame.shape[:2]
    if (w, h) == (target_w, target_h):
        return frame
    out = np.zeros((target_h, target_w, 3), dtype=np.uint8)
    # offsets into the source (crop) and into the canvas (pad), per axis
    sy, dy = max(0, (h - target_h) // 2), max(0, (target_h - h) // 2)
    sx, dx = max(0, (w - target_w) // 2), max(0, (target_w - w) // 2)
    ch, cw = min(h, target_h), min(w, target_w)
    out[dy : dy + ch, dx : dx + cw] = frame[sy : sy + ch, sx : sx + cw]
    return out


def read_clip(
    source: Source,
    count: int,
    fps: Fraction | int,
    width: int,
    height: int,
    mode: ResizeMode = "letterbox",
) -> tuple[np.ndarray, list[int]]:
    """Read `count` frames resampled to `fps` and fitted to width x height; also the source indices."""
    timing = frame_times(source)
    indices = select_frames(timing.times, timing.end, fps, count)
    return read_frames(source, indices, width, height, mode), indices


def read_frames(
    source: Source, indices: Sequence[int], width: int, height: int, mode: ResizeMode = "letterbox"
) -> np.ndarray:
    """The source frames at `indices` (repeats allowed), fitted to width x height.

    Decodes only as far as the last needed frame, and scales while converting to RGB.
    """
    info = probe(source)
    wanted: dict[int, list[int]] = {}
    for position, index in enumerate(indices):
        wanted.setdefault(index, []).append(position)
    scaled = fit_size(info.width, info.height, width, height, mode)
    out = np.empty((len(indices), height, width, 3), dtype=np.uint8)
    for index, frame in enumerate(iter_frames(source, size=scaled)):
        for position in wanted.pop(index, ()):
            out[position] = place(frame, width, height)
        if not wanted:
            break
    if wanted:
        raise VideoError(
            f"{_name(source)} decoded fewer frames than its header said ({info.frames})",
            "video-frames",
        )
    return out
